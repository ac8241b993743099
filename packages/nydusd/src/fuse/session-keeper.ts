import { type ChildProcess, spawn } from 'node:child_process'

/**
 * A small process beside the daemon that outlives it: it holds a pipe from
 * the daemon and, with `failover`, a copy of the /dev/fuse descriptor. When
 * the daemon says `bye` (a clean stop) it exits. When the pipe closes without
 * that (the daemon crashed or was killed) it either starts the same daemon
 * again on the same descriptor (`--fuse-fd 3`: the mount never goes away, the
 * kernel queues requests meanwhile and resends the ones the dead daemon had
 * read), or detaches the mount, as libfuse's auto_unmount does, so a dead
 * daemon never leaves a dead mount.
 */
export class SessionKeeper {
  private constructor(private readonly child: ChildProcess) {}

  static start(o: { mountpoint: string; fd: number; failover: boolean; argv: string[] }): SessionKeeper {
    const script = o.failover
      ? 'IFS= read -r cmd; [ "$cmd" = bye ] && exit 0; shift; exec "$@" --fuse-fd 3'
      : 'IFS= read -r cmd; [ "$cmd" = bye ] && exit 0; exec umount -l -- "$1"'
    // The daemon's own command line, minus a --fuse-fd an earlier takeover added.
    const argv = o.argv.filter((a, i) => a !== '--fuse-fd' && o.argv[i - 1] !== '--fuse-fd')
    const child = spawn('sh', ['-c', script, 'nydusd-keeper', o.mountpoint, ...argv], {
      stdio: ['pipe', 'inherit', 'inherit', o.failover ? o.fd : 'ignore'],
      detached: true
    })
    child.unref()
    child.stdin!.on('error', () => {})
    ;(child.stdin as unknown as { unref?: () => void }).unref?.()
    return new SessionKeeper(child)
  }

  /** A clean stop: the keeper exits and does nothing. */
  release(): void {
    this.child.stdin!.end('bye\n')
  }
}
