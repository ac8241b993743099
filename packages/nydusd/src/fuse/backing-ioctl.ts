import { ffi, libC } from '../ffi.js'

/** _IOW(229, 1, struct fuse_backing_map): register an open file as a backing file. */
const FUSE_DEV_IOC_BACKING_OPEN = 0x4010e501
/** _IOW(229, 2, uint32_t): drop a backing id. */
const FUSE_DEV_IOC_BACKING_CLOSE = 0x4004e502

type Ioctl = (fd: number, req: number, arg: Buffer) => number

/** The two /dev/fuse ioctls of passthrough (kernel 6.9+), through libc's ioctl via koffi (no compiler needed). */
export class BackingIoctl {
  private constructor(
    private readonly ioctl: Ioctl,
    private readonly errno: () => number
  ) {}

  /** Undefined, with the reason, when libc cannot be reached from here. */
  static load(): BackingIoctl | string {
    try {
      const ioctl: Ioctl = libC().func('int ioctl(int fd, unsigned long req, _Inout_ uint8_t *arg)')
      return new BackingIoctl(ioctl, () => ffi().errno())
    } catch (err) {
      return `koffi could not load libc: ${(err as Error).message}`
    }
  }

  /** Registers `fileFd` on the session: the backing id, or a negative errno. */
  open(devFd: number, fileFd: number): number {
    const map = Buffer.alloc(16)
    map.writeInt32LE(fileFd, 0)
    const id = this.ioctl(devFd, FUSE_DEV_IOC_BACKING_OPEN, map)
    return id < 0 ? -this.errno() : id
  }

  close(devFd: number, id: number): void {
    const arg = Buffer.alloc(4)
    arg.writeUInt32LE(id, 0)
    this.ioctl(devFd, FUSE_DEV_IOC_BACKING_CLOSE, arg)
  }
}
