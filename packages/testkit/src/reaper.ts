import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot } from './paths.js'

/**
 * Everything a test starts dies with its worker: a sidecar process (one per
 * worker, in its own session so the worker's signals do not reach it) holds
 * a pipe from the worker. When the pipe closes, because the worker ended,
 * timed out or was SIGKILLed, it kills the registered processes, detaches
 * the registered mounts and removes the registered directories.
 */
let sidecar: ChildProcess | undefined

function say(line: string): void {
  if (sidecar === undefined) {
    sidecar = spawn(process.execPath, [join(repoRoot, 'packages/testkit/bin/reaper.mjs')], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore']
    })
    sidecar.unref()
    const stdin = sidecar.stdin!
    stdin.on('error', () => {})
    // The pipe must not keep the worker alive; it closes when the worker goes.
    ;(stdin as unknown as { unref?: () => void }).unref?.()
  }
  sidecar.stdin!.write(line + '\n')
}

export const reaper = {
  pid: (pid: number | undefined): void => {
    if (pid !== undefined) say(`pid ${pid}`)
  },
  unpid: (pid: number | undefined): void => {
    if (pid !== undefined) say(`unpid ${pid}`)
  },
  mount: (path: string): void => {
    say(`mount ${path}`)
  },
  unmount: (path: string): void => {
    say(`unmount ${path}`)
  },
  /** Every process whose command line names `path`, and every mount under it. */
  under: (path: string): void => {
    say(`under ${path}`)
  },
  /** Every process in cgroup `name` (a containerd namespace's containers). */
  cgroup: (name: string): void => {
    say(`cgroup ${name}`)
  },
  dir: (path: string): void => {
    say(`dir ${path}`)
  },
  /** A network namespace: its processes, then it (and so its veth pair). */
  netns: (name: string): void => {
    say(`netns ${name}`)
  },
  unnetns: (name: string): void => {
    say(`unnetns ${name}`)
  },
  /** A host network link (a bridge): deleted after the namespaces. */
  link: (name: string): void => {
    say(`link ${name}`)
  },
  unlink: (name: string): void => {
    say(`unlink ${name}`)
  },
  undir: (path: string): void => {
    say(`undir ${path}`)
  },
  /** The sidecar's pid (tests of the reaper itself). */
  get sidecarPid(): number | undefined {
    return sidecar?.pid
  }
}

/** `spawn`, with the child registered: it is killed if the worker dies first. */
export function spawnOwned(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, opts)
  reaper.pid(child.pid)
  child.once('exit', () => reaper.unpid(child.pid))
  return child
}

export interface OwnedDaemon {
  proc: ChildProcess
  /** Everything it wrote to stderr so far. */
  stderr: () => string
  /** SIGTERM, then SIGKILL after 5 s. */
  stop: () => Promise<void>
}

/** `spawnOwned` for a long-running server: its stderr kept, and stopped when the test ends. */
export function ownedDaemon(t: { teardown: (fn: () => Promise<void>) => void }, cmd: string, args: string[]): OwnedDaemon {
  const proc = spawnOwned(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    proc.kill('SIGTERM')
    await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 5000))])
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  }
  t.teardown(stop)
  return { proc, stderr: () => stderr, stop }
}

/** Now, in this process: what the reaper's `under` does when the worker dies. */
export async function killUnder(path: string): Promise<void> {
  const { readdir, readFile } = await import('node:fs/promises')
  const { run } = await import('./run.js')
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes(path)) {
      try {
        process.kill(Number(p), 'SIGKILL')
      } catch {}
    }
  }
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map(l => l.split(' ')[1])
  for (const m of mounts.filter(m => m !== undefined && (m === path || m.startsWith(`${path}/`))).reverse())
    await run('umount', ['-l', '--', m])
}
