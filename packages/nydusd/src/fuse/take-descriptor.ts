import { closeSync, readFileSync, readlinkSync } from 'node:fs'
import { NydusdError } from '../errors.js'
import { ffi, libC } from '../ffi.js'

/** pidfd_open(2) and pidfd_getfd(2): one number on every architecture (the unified syscall table, 5.6+). */
const SYS_PIDFD_OPEN = 434
const SYS_PIDFD_GETFD = 438

type Syscall = (nr: number, ...typed: unknown[]) => number
let syscall: Syscall | undefined

/**
 * A copy of another process's /dev/fuse descriptor (pidfd_getfd, as root):
 * how a shared daemon's successor gets the sessions its dead predecessor's
 * keepers hold, with no socket and no SCM_RIGHTS. The process must be the
 * keeper of `mountpoint` (its command line says so) and the descriptor
 * /dev/fuse; anything else is refused.
 */
export function takeFuseDescriptor(pid: number, fd: number, mountpoint: string): number {
  const where = `session keeper ${pid} of ${mountpoint}`
  if (!isKeeperOf(pid, mountpoint)) throw new NydusdError('ERR_MOUNT', `${where}: no such process, or not this mount's keeper`)
  syscall ??= libC().func('long syscall(long nr, ...)') as Syscall
  const errno = (): number => ffi().errno()
  const pidfd = syscall(SYS_PIDFD_OPEN, 'int', pid, 'uint', 0)
  if (pidfd < 0) throw new NydusdError('ERR_MOUNT', `${where}: pidfd_open failed (errno ${errno()})`)
  let got: number
  try {
    got = syscall(SYS_PIDFD_GETFD, 'int', pidfd, 'int', fd, 'uint', 0)
  } finally {
    closeSync(pidfd)
  }
  if (got < 0) throw new NydusdError('ERR_MOUNT', `${where}: pidfd_getfd of descriptor ${fd} failed (errno ${errno()})`)
  if (readlinkSync(`/proc/self/fd/${got}`) !== '/dev/fuse') {
    closeSync(got)
    throw new NydusdError('ERR_MOUNT', `${where}: descriptor ${fd} is not /dev/fuse`)
  }
  return got
}

/** `pid` runs a SessionKeeper of `mountpoint` (so signalling it reaches no one else). */
export function isKeeperOf(pid: number, mountpoint: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')
    return argv[3] === 'nydusd-keeper' && argv[4] === mountpoint
  } catch {
    return false
  }
}
