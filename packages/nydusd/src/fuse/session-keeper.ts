import { type ChildProcess, spawn } from 'node:child_process'

/**
 * A daemon that exits with this hands its session over (PUT /api/v1/daemon/exit): not a death.
 * Outside the error table's exit codes, so a successor that fails is still counted.
 */
export const EXIT_HANDOVER = 99

/** How long a held session waits for a shared daemon's successor before it is detached. */
export const HOLD_SECS = 60

/**
 * A small process beside the daemon that outlives it: it holds a pipe from
 * the daemon and, with `failover`, a copy of the /dev/fuse descriptor. When
 * the daemon says `bye` (a clean stop) it exits. When the pipe closes without
 * that (the daemon crashed or was killed) it either detaches the mount, as
 * libfuse's auto_unmount does, so a dead daemon never leaves a dead mount, or
 * starts the same daemon again on the descriptor it holds (`--fuse-fd 3`), as
 * its own child, and again whenever one dies, until one exits cleanly (0:
 * stopped or unmounted). It holds the descriptor throughout, so the session
 * never has nobody holding it: the mount never goes away and the kernel queues
 * requests meanwhile. Successors know they are kept (NYDUSD_KEEPER_PID) and
 * start no keeper of their own. Ten deaths in a row end it with a detach; a
 * hand-over (exit code EXIT_HANDOVER, an upgrade) is not counted. A successor
 * runs the nydusd script named in `<pid-file>.upgrade` when that file exists
 * (an upgrade to another build), else the same one; `argv` is node, script, args.
 *
 * With `hold` (a shared daemon's mount, `--supervisor`), a keeper whose daemon
 * died starts nothing: it holds the descriptor for the daemon started next,
 * which copies it (pidfd_getfd) and sends SIGUSR1 (taken: exit). Nobody
 * within HOLD_SECS: the mount is detached.
 */
export class SessionKeeper {
  private constructor(private readonly child: ChildProcess) {}

  static start(o: { mountpoint: string; fd: number; failover: boolean; hold?: boolean; argv: string[]; pidFile?: string }): SessionKeeper {
    // A successor's pid goes to the pid file the moment it exists: a supervisor reading it never sees a dead one for long.
    const script = o.failover
      ? [
          'IFS= read -r cmd; [ "$cmd" = bye ] && exit 0',
          'mnt=$1; pidfile=$2; node=$3; bin=$4; shift 4; n=0',
          'while [ $n -lt 10 ]; do',
          '  if [ -n "$pidfile" ] && [ -s "$pidfile.upgrade" ]; then bin=$(cat "$pidfile.upgrade"); rm -f "$pidfile.upgrade"; fi',
          '  NYDUSD_KEEPER_PID=$$ "$node" "$bin" "$@" --fuse-fd 3 </dev/null & p=$!',
          '  [ -n "$pidfile" ] && echo $p > "$pidfile"',
          '  wait $p; rc=$?',
          '  [ $rc -eq 0 ] && exit 0',
          `  [ $rc -eq ${EXIT_HANDOVER} ] || n=$((n + 1))`,
          'done',
          'exec umount -l -- "$mnt"'
        ].join('\n')
      : o.hold === true
        ? [
            `trap 'kill $s 2>/dev/null; exit 0' USR1`,
            'IFS= read -r cmd; [ "$cmd" = bye ] && exit 0',
            // The sleep must not hold the session too: a SIGKILLed keeper would leave it held until the sleep ends.
            `sleep ${HOLD_SECS} 3>&- & s=$!; wait $s`,
            'exec umount -l -- "$1"'
          ].join('\n')
        : 'IFS= read -r cmd; [ "$cmd" = bye ] && exit 0; exec umount -l -- "$1"'
    const holds = o.failover || o.hold === true
    const child = spawn('sh', ['-c', script, 'nydusd-keeper', o.mountpoint, o.pidFile ?? '', ...o.argv], {
      stdio: ['pipe', 'inherit', 'inherit', holds ? o.fd : 'ignore'],
      detached: true
    })
    child.unref()
    child.stdin!.on('error', () => {})
    ;(child.stdin as unknown as { unref?: () => void }).unref?.()
    return new SessionKeeper(child)
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  /** A clean stop: the keeper exits and does nothing. */
  release(): void {
    this.child.stdin!.end('bye\n')
  }
}
