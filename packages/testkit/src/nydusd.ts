import type { ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { repoRoot } from './paths.js'
import { run } from './run.js'
import { reaper, spawnOwned } from './reaper.js'

export const nydusdBin = join(repoRoot, 'packages/nydusd/bin/nydusd.cjs')

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

export interface MountedImage {
  mnt: string
  apisock: string
  proc: ChildProcess
  /** Everything the daemon logged so far (pino JSON lines on stderr). */
  logs: () => string
  /** GET on the daemon's API socket; parsed JSON unless `raw`. */
  api: (path: string, raw?: boolean) => Promise<any>
  /** SIGTERM, wait for exit; the mount is gone afterwards. */
  stop: () => Promise<number | null>
}

export async function isMounted(mnt: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8')
  return mounts.split('\n').some(l => l.split(' ')[4] === mnt)
}

/** Unmounts whatever is at `mnt`, lazily if it is busy; never throws. */
export async function forceUnmount(mnt: string): Promise<void> {
  if (!(await isMounted(mnt))) return
  await run('fusermount', ['-u', '-z', mnt])
  if (await isMounted(mnt)) await run('umount', ['-l', mnt])
}

/**
 * Aborts the FUSE connection of the mount at `mnt`, as fusectl's `abort` does.
 * fusectl is mounted in a private mount namespace of a child, so tests that
 * abort at the same time never mount or unmount it under each other.
 */
export async function abortFuseConnection(mnt: string): Promise<void> {
  const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find(l => l.split(' ')[4] === mnt)
  const minor = line?.split(' ')[2]?.split(':')[1]
  if (minor === undefined || !/^\d+$/.test(minor)) throw new Error(`abortFuseConnection: nothing is mounted at ${mnt}`)
  const ctl = '/sys/fs/fuse/connections'
  const script = `mountpoint -q ${ctl} || mount -t fusectl none ${ctl}; echo 1 > ${ctl}/$1/abort`
  const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', minor], { timeoutMs: 10_000 })
  if (r.code !== 0) throw new Error(`abortFuseConnection ${mnt}: ${r.stderr.trim()}`)
}

export async function apiGet(sock: string, path: string): Promise<{ status: number; body: string }> {
  return await apiRequest(sock, path)
}

/** An HTTP request on a unix socket (nydusd's and the snapshotter's APIs). */
export async function apiRequest(sock: string, path: string, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, path, method }, res => {
      const parts: Buffer[] = []
      res.on('data', (b: Buffer) => parts.push(b))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }))
    })
    req.on('error', reject)
    // A daemon that never answers fails the test naming the request, instead of hanging it.
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} on ${sock}: no answer within 60 s`)))
    req.end(body)
  })
}

/**
 * Starts the real nydusd bin on `mnt` and waits until the mount is up. The
 * test's teardown always stops it and unmounts, even when the test failed.
 */
export async function mountImage(
  t: Teardown,
  o: {
    dir: string
    bootstrap?: string
    image?: string
    config?: unknown
    mnt: string
    args?: string[]
    uid?: number
    /** Added to the daemon's environment. */
    env?: Record<string, string>
    /** Runs nydusd through this command (e.g. a node's `netPrefix`: nsenter into its network namespace). */
    prefix?: string[]
  }
): Promise<MountedImage> {
  const cfg = join(o.dir, `nydusd-${Date.now()}-${Math.random().toString(16).slice(2)}.json`)
  if (o.config !== undefined) await writeFile(cfg, JSON.stringify(o.config))
  const apisock = `${cfg}.sock`
  // With an image reference the daemon pulls the bootstrap itself (and needs no config).
  const source = o.image !== undefined ? ['--image', o.image, '--work-dir', `${cfg}.work`] : ['--bootstrap', o.bootstrap!]
  const args = [
    nydusdBin,
    ...(o.config !== undefined ? ['--config', cfg] : []),
    ...source,
    '--mountpoint',
    o.mnt,
    '--apisock',
    apisock,
    '--log-level',
    'debug',
    // A test file can run every mount over the other FUSE transport (mount-fuse-native.test.ts).
    ...(process.env.NYDUSD_TEST_TRANSPORT === undefined ? [] : ['--fuse-transport', process.env.NYDUSD_TEST_TRANSPORT]),
    ...(o.args ?? [])
  ]
  // `uid`: run unprivileged (uid and gid), through setpriv, which execs nydusd in its place.
  const [cmd, argv] =
    o.uid === undefined
      ? [process.execPath, args]
      : ['setpriv', ['--reuid', String(o.uid), '--regid', String(o.uid), '--clear-groups', process.execPath, ...args]]
  const [head, ...rest] = [...(o.prefix ?? []), cmd, ...argv]
  const proc = spawnOwned(head, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } })
  reaper.mount(o.mnt)
  let stderr = ''
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  proc.stdout!.resume()
  const exited = new Promise<number | null>(resolve => proc.once('exit', code => resolve(code)))
  let done = false
  const stop = async (): Promise<number | null> => {
    if (!done) {
      done = true
      proc.kill('SIGTERM')
    }
    const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)])
    if (code === 'timeout') proc.kill('SIGKILL')
    await forceUnmount(o.mnt)
    reaper.unmount(o.mnt)
    return code === 'timeout' ? null : code
  }
  t.teardown(async () => {
    await stop()
  })
  for (let i = 0; i < 1200; i++) {
    if (proc.exitCode !== null) throw new Error(`nydusd exited ${proc.exitCode}: ${stderr.trim()}`)
    if (
      (await isMounted(o.mnt)) &&
      (await apiGet(apisock, '/api/v1/daemon').then(
        () => true,
        () => false
      ))
    )
      break
    await sleep(50)
    if (i === 1199) throw new Error(`nydusd did not mount ${o.mnt} within 60 s: ${stderr.trim()}`)
  }
  return {
    mnt: o.mnt,
    apisock,
    proc,
    logs: () => stderr,
    api: async (path: string, raw = false) => {
      const r = await apiGet(apisock, path)
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body}`)
      return raw ? r.body : JSON.parse(r.body)
    },
    stop
  }
}
