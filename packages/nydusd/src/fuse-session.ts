import { readdir, readlink } from 'node:fs/promises'

/**
 * fuse-native runs the FUSE loop on its own thread and never tells JS when the
 * kernel ends the session (someone ran `fusermount -u` or `umount`, or the
 * last user of a lazily unmounted mount went away). The loop's end closes the
 * process's /dev/fuse descriptor, so we watch that descriptor instead of the
 * mount table: a lazily unmounted mount that still has open files keeps its
 * descriptor (and is still served) until the kernel lets go of it.
 */
export async function fuseFds(): Promise<Set<string>> {
  const fds = await readdir('/proc/self/fd').catch(() => [])
  const out = new Set<string>()
  await Promise.all(
    fds.map(async fd => {
      if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === '/dev/fuse') out.add(fd)
    })
  )
  return out
}

export class FuseSessionWatch {
  private timer?: NodeJS.Timeout

  private constructor(private readonly fd: string) {}

  /** The descriptor that mounting added; undefined if none can be told apart. */
  static async after(before: Set<string>): Promise<FuseSessionWatch | undefined> {
    const added = [...(await fuseFds())].filter(fd => !before.has(fd))
    return added.length === 1 ? new FuseSessionWatch(added[0]!) : undefined
  }

  /** Calls `onEnd` once, when the descriptor is closed. */
  start(onEnd: () => void, intervalMs = 1000): void {
    const tick = async (): Promise<void> => {
      const still = await readlink(`/proc/self/fd/${this.fd}`).then(
        l => l === '/dev/fuse',
        () => false
      )
      if (this.timer === undefined) return
      if (still)
        this.timer = setTimeout(() => {
          void tick()
        }, intervalMs).unref()
      else {
        this.timer = undefined
        onEnd()
      }
    }
    this.timer = setTimeout(() => {
      void tick()
    }, intervalMs).unref()
  }

  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
