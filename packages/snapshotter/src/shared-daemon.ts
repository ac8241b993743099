import { spawn } from 'node:child_process'
import { mkdir, open, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isErrorCode, NydusError } from '@nydusjs/errors'
import type { Logger } from 'pino'
import { SnapshotterError } from './errors.js'
import { alive, NYDUSD_NODE_FLAGS, nydusdApi, readPid } from './process.js'

/**
 * nydus-snapshotter's daemon_mode "shared": one nydusd for the node, started
 * with no image (detached: it outlives the snapshotter), each image mounted
 * and unmounted through its API (POST and DELETE /api/v1/mount). With
 * `failover` it keeps its mounts in a supervisor file: when it dies, keepers
 * hold the FUSE sessions and the daemon started next takes them over.
 */
export class SharedDaemon {
  readonly apisock: string
  readonly pidFile: string
  private starting?: Promise<number>

  readonly stateFile: string

  constructor(private readonly o: { root: string; nydusdPath: () => string; failover: boolean; log: Logger }) {
    this.apisock = join(o.root, 'daemons', 'shared.sock')
    this.pidFile = join(o.root, 'daemons', 'shared.pid')
    this.stateFile = join(o.root, 'daemons', 'shared.state')
  }

  /** The daemon's pid if it runs. */
  async pid(): Promise<number | undefined> {
    const pid = await readPid(this.pidFile)
    return pid !== undefined && alive(pid) ? pid : undefined
  }

  /** The running daemon's pid, else a new one's (one start at a time). */
  async ensure(): Promise<number> {
    const running = await this.pid()
    if (running !== undefined && (await nydusdApi(this.apisock, 'GET', '/api/v1/daemon')).status === 200) return running
    this.starting ??= this.start().finally(() => {
      this.starting = undefined
    })
    return await this.starting
  }

  /** Mountpoints the daemon serves. */
  async mounts(): Promise<string[]> {
    const r = await nydusdApi(this.apisock, 'GET', '/api/v1/mount')
    if (r.status !== 200) return []
    return (JSON.parse(r.body) as Array<{ mountpoint: string }>).map(m => m.mountpoint)
  }

  /** POST /api/v1/mount; the daemon's error (its code and one line) when it refuses. */
  async mount(mountpoint: string, bootstrap: string, config: string, imageRef: string): Promise<void> {
    const body = JSON.stringify({ source: bootstrap, fs_type: 'rafs', config: await readFile(config, 'utf8') })
    const r = await nydusdApi(this.apisock, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`, body)
    if (r.status === 200) return
    const err = parseError(r.body)
    const msg = `shared nydusd did not mount ${imageRef}: ${err.message ?? r.body}`
    if (err.code !== undefined && isErrorCode(err.code)) throw new NydusError(err.code, msg)
    throw new SnapshotterError('ERR_INTERNAL', msg)
  }

  async unmount(mountpoint: string): Promise<void> {
    if ((await this.pid()) === undefined) return
    await nydusdApi(this.apisock, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`)
  }

  private async start(): Promise<number> {
    await mkdir(join(this.o.root, 'daemons'), { recursive: true })
    const logPath = join(this.o.root, 'daemons', 'shared.log')
    const logFile = await open(logPath, 'a')
    const supervisor = this.o.failover ? ['--supervisor', this.stateFile] : []
    const child = spawn(process.execPath, [...NYDUSD_NODE_FLAGS, this.o.nydusdPath(), '--apisock', this.apisock, ...supervisor], {
      detached: true,
      stdio: ['ignore', logFile.fd, logFile.fd]
    })
    await logFile.close()
    child.unref()
    if (child.pid === undefined) throw new SnapshotterError('ERR_CONFIG', `nydusd ${this.o.nydusdPath()} could not be started`)
    await writeFile(this.pidFile, String(child.pid))
    // It answers once it has taken over what a dead predecessor held: a minute, for many mounts under load.
    for (let i = 0; (await nydusdApi(this.apisock, 'GET', '/api/v1/daemon')).status !== 200; i++) {
      if (child.exitCode !== null || !alive(child.pid) || i > 2400) {
        const tail = (await readFile(logPath, 'utf8').catch(() => '')).trim().split('\n').at(-1)
        throw new SnapshotterError('ERR_CONFIG', `shared nydusd did not start: ${tail ?? 'no output'}`)
      }
      await sleep(25)
    }
    this.o.log.info({ pid: child.pid, apisock: this.apisock }, 'shared nydusd started')
    return child.pid
  }
}

function parseError(body: string): { code?: string; message?: string } {
  try {
    const v = JSON.parse(body) as { code?: unknown; message?: unknown }
    return { code: typeof v.code === 'string' ? v.code : undefined, message: typeof v.message === 'string' ? v.message : undefined }
  } catch {
    return {}
  }
}
