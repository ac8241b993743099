import { spawn, type ChildProcess } from 'node:child_process'
import { constants, readFileSync, readSync } from 'node:fs'
import { access, open, stat } from 'node:fs/promises'
import { resolve as resolvePath } from 'node:path'
import { withContext } from '@nydusjs/errors'
import { RafsError, openValidated, type BootstrapReader } from '@nydusjs/rafs/read'
import { NydusdError } from './errors.js'
import { noteChurn } from './memory-release.js'

/** fusermount lets a user other than root ask for allow_other only where /etc/fuse.conf says user_allow_other. */
export function mayAllowOther(): boolean {
  if (process.getuid?.() === 0) return true
  try {
    return /^\s*user_allow_other\s*$/m.test(readFileSync('/etc/fuse.conf', 'utf8'))
  } catch {
    return false
  }
}

/**
 * Lists the mounted root from a child process, started before the mount so
 * that its start-up costs no reader anything. Not from a thread of ours: one
 * waiting on our own mount would wedge the process in the kernel if it died
 * meanwhile (the request waits for an answer only we could give).
 */
export class RootLister {
  private readonly child: ChildProcess
  private readonly exited: Promise<void>

  constructor(mountpoint: string) {
    this.child = spawn('sh', ['-c', 'read go && exec ls -al -- "$1"', 'sh', mountpoint], { stdio: ['pipe', 'ignore', 'ignore'] })
    this.exited = new Promise(resolve => {
      this.child.once('exit', () => resolve())
      this.child.once('error', () => resolve())
    })
    this.child.stdin!.on('error', () => {})
  }

  async run(): Promise<void> {
    this.child.stdin!.end('go\n')
    const timer = setTimeout(() => this.cancel(), 2000)
    await this.exited
    clearTimeout(timer)
  }

  cancel(): void {
    this.child.kill('SIGKILL')
  }
}

/**
 * The bootstrap at `path`, checked whole, then paged out: its tables are read
 * back from the file (the descriptor stays open, so a replaced or deleted file
 * does not matter) a page at a time, each page checked against the digest
 * taken while it was in memory. `reader.close()` lets the descriptor go.
 */
export async function openBootstrap(path: string): Promise<BootstrapReader> {
  const file = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new NydusdError('ERR_BOOTSTRAP_NOT_FOUND', `bootstrap ${path}: no such file`)
    throw new NydusdError('ERR_BOOTSTRAP', `bootstrap ${path}: ${err.message}`)
  })
  try {
    const buf = await file.readFile().catch((err: Error) => {
      throw new NydusdError('ERR_BOOTSTRAP', `bootstrap ${path}: ${err.message}`)
    })
    const reader = await openValidated(buf).catch((err: unknown) => {
      throw err instanceof RafsError ? withContext(err, `bootstrap ${path}`) : err
    })
    const fd = file.fd
    reader.pageOut((position, length) => readPage(fd, path, position, length), { close: () => void file.close().catch(() => {}) })
    return reader
  } catch (err) {
    await file.close()
    throw err
  }
}

function readPage(fd: number, path: string, position: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length)
  noteChurn(length)
  try {
    return b.subarray(0, readSync(fd, b, 0, length, position))
  } catch (err) {
    throw new NydusdError('ERR_BOOTSTRAP', `bootstrap ${path}: ${(err as Error).message}`)
  }
}

export async function checkMountpoint(mnt: string): Promise<void> {
  // Not root: the setuid fusermount opens /dev/fuse, so it only has to exist.
  const mode = process.getuid?.() === 0 ? constants.R_OK | constants.W_OK : constants.F_OK
  await access('/dev/fuse', mode).catch(() => {
    throw new NydusdError(
      'ERR_FUSE_MISSING',
      "FUSE is not available: /dev/fuse is missing or not accessible (load the fuse module, install Debian's fuse package)"
    )
  })
  const st = await stat(mnt).catch((err: NodeJS.ErrnoException) => {
    throw mountpointError(mnt, err)
  })
  if (!st.isDirectory()) throw new NydusdError('ERR_MOUNT', `mountpoint ${mnt} is not a directory`)
  if (mountTypeAt(resolvePath(mnt)) !== undefined) {
    throw new NydusdError('ERR_MOUNTPOINT_BUSY', `mountpoint ${mnt} is busy: something is already mounted there`)
  }
}

/** A dead FUSE mount (its daemon killed) answers every access with ENOTCONN: name it and the way out. */
function mountpointError(mnt: string, err: NodeJS.ErrnoException): NydusdError {
  if (err.code === 'ENOENT') return new NydusdError('ERR_MOUNT', `mountpoint ${mnt} does not exist`)
  if (err.code === 'ENOTCONN') {
    return new NydusdError(
      'ERR_MOUNTPOINT_STALE',
      `mountpoint ${mnt} is a dead FUSE mount (ENOTCONN: the daemon that served it is gone); detach it first with: fusermount -uz ${mnt}`
    )
  }
  return new NydusdError('ERR_MOUNT', `mountpoint ${mnt}: ${err.message}`)
}

/** The filesystem type mounted at the absolute path `mnt` (mountinfo's field after " - "), if any. */
export function mountTypeAt(mnt: string): string | undefined {
  for (const l of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ')
    if (unescapeMount(f[4] ?? '') === mnt) return f[f.indexOf('-') + 1]
  }
  return undefined
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
