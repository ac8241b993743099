import { setTimeout as sleep } from 'node:timers/promises'
import { apiRequest, forceUnmount, nydusdBin } from './nydusd.js'
import { reaper, spawnOwned } from './reaper.js'
import type { ChildProcess } from 'node:child_process'

export interface SharedNydusd {
  apisock: string
  proc: ChildProcess
  logs: () => string
  /** POST /api/v1/mount: status and body (JSON or not); the mountpoint is unmounted at teardown whatever happens. */
  mount: (mnt: string, body: unknown) => Promise<{ status: number; body: string }>
  umount: (mnt: string) => Promise<{ status: number; body: string }>
  /** GET, parsed. */
  get: (path: string) => Promise<any>
  /** SIGTERM (SIGKILL after 10 s); every mountpoint it was given is unmounted afterwards. */
  stop: () => Promise<number | null>
}

/** A nydusd started with no image (`--apisock` alone), waiting for mounts through its API. */
export async function startSharedNydusd(
  t: { teardown: (fn: () => Promise<void>) => void },
  o: { apisock: string; args?: string[]; env?: Record<string, string> }
): Promise<SharedNydusd> {
  const proc = spawnOwned(process.execPath, [nydusdBin, '--apisock', o.apisock, '--log-level', 'debug', ...(o.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...o.env }
  })
  let stderr = ''
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const exited = new Promise<number | null>(resolve => proc.once('exit', code => resolve(code)))
  const given = new Set<string>()
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
    const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)])
    if (code === 'timeout') proc.kill('SIGKILL')
    for (const mnt of given) {
      await forceUnmount(mnt)
      reaper.unmount(mnt)
    }
    return code === 'timeout' ? null : code
  }
  t.teardown(async () => {
    await stop()
  })
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`nydusd exited ${proc.exitCode}: ${stderr.trim()}`)
    if ((await apiRequest(o.apisock, '/api/v1/daemon').catch(() => undefined))?.status === 200) break
    if (i > 400) throw new Error(`nydusd did not answer on ${o.apisock} within 20 s: ${stderr.trim()}`)
    await sleep(50)
  }
  return {
    apisock: o.apisock,
    proc,
    logs: () => stderr,
    mount: async (mnt, body) => {
      given.add(mnt)
      reaper.mount(mnt)
      const q = encodeURIComponent(mnt)
      return await apiRequest(o.apisock, `/api/v1/mount?mountpoint=${q}`, 'POST', JSON.stringify(body))
    },
    umount: async mnt => await apiRequest(o.apisock, `/api/v1/mount?mountpoint=${encodeURIComponent(mnt)}`, 'DELETE'),
    get: async path => {
      const r = await apiRequest(o.apisock, path)
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body}`)
      return path.endsWith('/metrics') ? r.body : JSON.parse(r.body)
    },
    stop
  }
}
