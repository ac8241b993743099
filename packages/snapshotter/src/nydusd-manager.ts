import { spawn, spawnSync } from 'node:child_process'
import { constants, readFileSync } from 'node:fs'
import { access, mkdir, open, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { insecureScheme, parseImageRef } from '@nydusjs/registry'
import type { Logger } from 'pino'
import { isErrorCode, NydusError } from '@nydusjs/errors'
import { SnapshotterError } from './errors.js'
import { alive, isMounted, NYDUSD_NODE_FLAGS, nydusdApi, pidOf, readPid, readText } from './process.js'
import { SharedDaemon } from './shared-daemon.js'

export interface NydusdManagerOptions {
  root: string
  /** The nydusd bin (`--nydusd-path`). */
  nydusdPath: string
  /** A nydusd JSON config used for every image; its backend is filled in from the image reference. */
  nydusdConfig?: string
  /** recover_policy "failover": each nydusd runs with --failover, so a new one takes its FUSE session over. */
  failover?: boolean
  /** nydus-snapshotter's daemon_mode: one nydusd per image (default), or one for the node. */
  daemonMode?: 'dedicated' | 'shared'
  log: Logger
}

/**
 * How long a dead daemon's keeper gets before the watchdog restarts the image instead (the keeper
 * writes its successor's pid at once; this covers a keeper that is gone too).
 */
const TAKEOVER_GRACE_MS = 10_000

export interface ImageMount {
  /** The directory nydusd serves the image at: an overlay's lower layer. */
  mountpoint: string
  pid: number
  /** The nydusd JSON config it runs with (Kata's extraoption carries it). */
  config: string
}

/** One image's daemon, as the system API and the metrics report it. */
export interface DaemonInfo {
  id: string
  image: string
  pid?: number
  mountpoint: string
  apisock: string
  alive: boolean
  mounted: boolean
}

const LOOPBACK = /^(127\.|localhost(:|$)|\[::1\])/

/**
 * One nydusd per converted image, started detached (it outlives a snapshotter
 * restart), with its API socket and blob cache under the root. A mount that
 * is already up is reused; one whose daemon is gone is started again.
 */
export class NydusdManager {
  /** daemon_mode "shared": the node's one nydusd. */
  private readonly shared?: SharedDaemon

  constructor(private readonly o: NydusdManagerOptions) {
    if (o.daemonMode === 'shared')
      this.shared = new SharedDaemon({ root: o.root, nydusdPath: () => this.o.nydusdPath, failover: o.failover === true, log: o.log })
  }

  /** Daemons started again after they died (recover_policy "restart"). */
  restarts = 0
  private readonly known = new Map<string, { bootstrap: string; imageRef: string }>()
  private readonly starting = new Map<string, Promise<ImageMount>>()
  private recovering?: Promise<string[]>
  /** When each image's daemon was first seen dead (failover: its successor is given a grace). */
  private readonly deadSince = new Map<string, number>()

  /** The image's nydusd and its mount: the running one, else a new one (one start at a time per image). */
  async ensure(id: string, bootstrap: string, imageRef: string): Promise<ImageMount> {
    let p = this.starting.get(id)
    if (p === undefined) {
      // An image that never mounted is forgotten again: the watchdog would start it every second.
      const known = this.known.has(id)
      this.known.set(id, { bootstrap, imageRef })
      p = this.start(id, bootstrap, imageRef)
        .catch((err: unknown) => {
          if (!known) this.known.delete(id)
          throw err
        })
        .finally(() => this.starting.delete(id))
      this.starting.set(id, p)
    }
    return await p
  }

  /**
   * nydus-snapshotter's recover_policy "restart": a daemon that died is
   * started again on the same mountpoint (its dead mount detached first), so
   * new containers of the image start; those that ran on the dead mount see
   * ENOTCONN (keeping them alive takes failover, issue #17). Returns the ids restarted.
   */
  async recover(): Promise<string[]> {
    // One check at a time: the watchdog ticks every second, and a restart under load takes longer.
    this.recovering ??= this.recoverDead().finally(() => {
      this.recovering = undefined
    })
    return await this.recovering
  }

  private async recoverDead(): Promise<string[]> {
    if (this.shared !== undefined) return await this.recoverShared(this.shared)
    const done: string[] = []
    for (const [id, img] of this.known) {
      // A start already under way (a slow restart the previous check began) is not a second death.
      if (this.starting.has(id)) continue
      const pid = await readPid(join(this.o.root, 'daemons', `${id}.pid`))
      if (pid !== undefined && alive(pid)) {
        this.deadSince.delete(id)
        continue
      }
      // With failover the dead daemon's keeper starts a successor, which rewrites the pid file.
      const since = this.deadSince.get(id) ?? Date.now()
      this.deadSince.set(id, since)
      if (this.o.failover === true && Date.now() - since < TAKEOVER_GRACE_MS) continue
      this.deadSince.delete(id)
      try {
        await this.ensure(id, img.bootstrap, img.imageRef)
        this.restarts++
        done.push(id)
        this.o.log.warn({ image: img.imageRef, pid }, 'nydusd had died: restarted')
      } catch (err) {
        this.o.log.error({ image: img.imageRef, err: (err as Error).message }, 'nydusd restart failed')
      }
    }
    return done
  }

  /**
   * The shared daemon died. "restart": its keepers detached its mounts (auto_unmount); a new one is
   * started and every image mounted again. "failover": its keepers hold the sessions, and the new one
   * (started with the same supervisor file) takes them over: running containers notice nothing.
   */
  private async recoverShared(shared: SharedDaemon): Promise<string[]> {
    if (this.known.size === 0 || (await shared.pid()) !== undefined) return []
    const dead = await readPid(shared.pidFile)
    try {
      await shared.ensure()
    } catch (err) {
      this.o.log.error({ pid: dead, err: (err as Error).message }, 'shared nydusd had died: starting a new one failed')
      return []
    }
    this.restarts++
    this.o.log.warn(
      { pid: dead, images: this.known.size, failover: this.o.failover === true },
      this.o.failover === true
        ? 'shared nydusd had died: restarted, taking its sessions over'
        : 'shared nydusd had died: restarted, mounting every image again'
    )
    const done: string[] = []
    for (const [id, img] of this.known) {
      try {
        await this.ensure(id, img.bootstrap, img.imageRef)
        done.push(id)
      } catch (err) {
        this.o.log.error({ image: img.imageRef, err: (err as Error).message }, 'mount in the shared nydusd failed')
      }
    }
    return done
  }

  /** Every image this snapshotter serves through a nydusd, with its daemon's state. */
  list(): DaemonInfo[] {
    const mounts = new Set(
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map(l => l.split(' ')[4])
    )
    return [...this.known].map(([id, img]) => {
      const pid = pidOf(readText(this.shared?.pidFile ?? join(this.o.root, 'daemons', `${id}.pid`)))
      const mountpoint = join(this.o.root, 'mnt', id)
      const apisock = this.shared?.apisock ?? join(this.o.root, 'daemons', `${id}.sock`)
      return { id, image: img.imageRef, pid, mountpoint, apisock, alive: pid !== undefined && alive(pid), mounted: mounts.has(mountpoint) }
    })
  }

  /**
   * nydus-snapshotter's hot upgrade (PUT /api/v1/nydusd/upgrade): each running
   * nydusd hands its FUSE session to a successor started by its keeper (from
   * `nydusdPath` when given, which new daemons use too), one image at a time;
   * containers keep reading throughout. Needs recover_policy "failover".
   */
  async upgrade(nydusdPath?: string): Promise<Array<{ id: string; from: number; to: number }>> {
    if (this.o.failover !== true || this.shared !== undefined)
      throw new SnapshotterError(
        'ERR_CONFIG',
        'upgrade needs recover_policy "failover" and daemon_mode "dedicated": only a kept FUSE session can change hands'
      )
    if (nydusdPath !== undefined) {
      await access(nydusdPath, constants.R_OK).catch(() => {
        throw new SnapshotterError('ERR_CONFIG', `nydusd_path ${nydusdPath}: no such readable file`)
      })
      this.o.nydusdPath = nydusdPath
    }
    const done: Array<{ id: string; from: number; to: number }> = []
    for (const d of this.list()) {
      if (!d.alive || d.pid === undefined) continue
      const pidFile = join(this.o.root, 'daemons', `${d.id}.pid`)
      await writeFile(`${pidFile}.upgrade`, this.o.nydusdPath)
      await putExit(d.apisock)
      const to = await this.successorOf(d.id, d.pid)
      this.o.log.info({ image: d.image, from: d.pid, to }, 'nydusd upgraded')
      done.push({ id: d.id, from: d.pid, to })
    }
    return done
  }

  /** The pid of the daemon that took over from `from`, once it answers on its API (10 s at most). */
  private async successorOf(id: string, from: number): Promise<number> {
    const pidFile = join(this.o.root, 'daemons', `${id}.pid`)
    for (let i = 0; i < 400; i++) {
      const pid = await readPid(pidFile)
      if (pid !== undefined && pid !== from && alive(pid) && (await answers(join(this.o.root, 'daemons', `${id}.sock`), pid))) return pid
      await sleep(25)
    }
    throw new SnapshotterError('ERR_INTERNAL', `image ${id}: no nydusd took over from ${from} within 10 s`)
  }

  /** Knows an image whose daemon an earlier run of the snapshotter started. */
  adopt(id: string, bootstrap: string, imageRef: string): void {
    this.o.log.debug({ id, image: imageRef }, 'image adopted from an earlier run')
    this.known.set(id, { bootstrap, imageRef })
  }

  /** Forgets an image (its bootstrap snapshot is gone) after stopping its daemon. */
  async forget(id: string): Promise<void> {
    this.known.delete(id)
    await this.stop(id)
  }

  /** The image mounted in the shared daemon (started first if it is not running). */
  private async startShared(shared: SharedDaemon, id: string, bootstrap: string, imageRef: string): Promise<ImageMount> {
    const mountpoint = join(this.o.root, 'mnt', id)
    const config = join(this.o.root, 'daemons', `${id}.json`)
    const pid = await shared.ensure()
    if ((await isMounted(mountpoint)) && (await shared.mounts()).includes(mountpoint)) return { mountpoint, pid, config }
    // A mount the daemon does not serve is a dead daemon's (ENOTCONN): detach it.
    if (await isMounted(mountpoint)) spawnSync('fusermount', ['-uz', '--', mountpoint], { stdio: 'ignore', timeout: 5000 })
    await mkdir(mountpoint, { recursive: true })
    await writeFile(config, JSON.stringify(await this.configFor(imageRef, join(this.o.root, 'cache'))))
    await shared.mount(mountpoint, bootstrap, config, imageRef)
    this.o.log.info({ image: imageRef, mountpoint, pid }, 'mounted in the shared nydusd')
    return { mountpoint, pid, config }
  }

  private async start(id: string, bootstrap: string, imageRef: string): Promise<ImageMount> {
    if (this.shared !== undefined) return await this.startShared(this.shared, id, bootstrap, imageRef)
    const mountpoint = join(this.o.root, 'mnt', id)
    const pidFile = join(this.o.root, 'daemons', `${id}.pid`)
    const config = join(this.o.root, 'daemons', `${id}.json`)
    const running = await readPid(pidFile)
    if (running !== undefined && alive(running) && (await isMounted(mountpoint))) return { mountpoint, pid: running, config }
    // A daemon that died leaves its mount behind, dead (ENOTCONN): detach it, as fusermount -uz would.
    if (await isMounted(mountpoint)) spawnSync('fusermount', ['-uz', '--', mountpoint], { stdio: 'ignore', timeout: 5000 })
    await mkdir(mountpoint, { recursive: true })
    await mkdir(join(this.o.root, 'daemons'), { recursive: true })
    await writeFile(config, JSON.stringify(await this.configFor(imageRef, join(this.o.root, 'cache'))))
    const logFile = await open(join(this.o.root, 'daemons', `${id}.log`), 'a')
    const child = spawn(
      process.execPath,
      [
        ...NYDUSD_NODE_FLAGS,
        this.o.nydusdPath,
        '--config',
        config,
        '--bootstrap',
        bootstrap,
        '--mountpoint',
        mountpoint,
        '--apisock',
        join(this.o.root, 'daemons', `${id}.sock`),
        '--pid-file',
        pidFile,
        ...(this.o.failover === true ? ['--failover'] : [])
      ],
      { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] }
    )
    await logFile.close()
    child.unref()
    if (child.pid === undefined) throw new SnapshotterError('ERR_CONFIG', `nydusd ${this.o.nydusdPath} could not be started`)
    await writeFile(pidFile, String(child.pid))
    for (let i = 0; !(await isMounted(mountpoint)); i++) {
      if (child.exitCode !== null || !alive(child.pid) || i > 400) {
        const tail = (await readFile(join(this.o.root, 'daemons', `${id}.log`), 'utf8').catch(() => '')).trim().split('\n').at(-1)
        // nydusd's own code (its last line ends in it) says what kind of failure this is: corrupt, not found, ...
        const code = /\[(ERR_\w+)\]$/.exec(tail ?? '')?.[1]
        const msg = `nydusd for ${imageRef} did not mount: ${tail ?? 'no output'}`
        if (code !== undefined && isErrorCode(code)) throw new NydusError(code, msg.replace(/ \[ERR_\w+\]$/, ''))
        throw new SnapshotterError('ERR_CONFIG', msg)
      }
      await sleep(25)
    }
    this.o.log.info({ image: imageRef, mountpoint, pid: child.pid }, 'nydusd started')
    return { mountpoint, pid: child.pid, config }
  }

  /** Stops the image's nydusd (it unmounts on SIGTERM). */
  private async stop(id: string): Promise<void> {
    if (this.shared !== undefined) {
      await this.shared.unmount(join(this.o.root, 'mnt', id))
      return
    }
    const pid = await readPid(join(this.o.root, 'daemons', `${id}.pid`))
    if (pid === undefined || !alive(pid)) return
    process.kill(pid, 'SIGTERM')
    for (let i = 0; i < 200 && alive(pid); i++) await sleep(25)
    if (alive(pid)) process.kill(pid, 'SIGKILL')
  }

  /** The --nydusd-config JSON (an object), or a one-line ERR_CONFIG naming the file; checked at start too. */
  async baseConfig(): Promise<Record<string, any>> {
    const path = this.o.nydusdConfig
    if (path === undefined) return {}
    let value: unknown
    try {
      value = JSON.parse(await readFile(path, 'utf8'))
    } catch (err) {
      throw new SnapshotterError('ERR_CONFIG', `nydusd config ${path}: ${(err as Error).message.split('\n')[0]}`)
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new SnapshotterError('ERR_CONFIG', `nydusd config ${path}: not a JSON object`)
    return value as Record<string, any>
  }

  /** The registry backend config an image's nydusd gets (also what a native copy reads with). */
  async backendConfig(imageRef: string): Promise<Record<string, any>> {
    return ((await this.configFor(imageRef, join(this.o.root, 'cache'))) as any).device.backend.config
  }

  private async configFor(imageRef: string, cacheDir: string): Promise<unknown> {
    const ref = parseImageRef(imageRef)
    const base = await this.baseConfig()
    // The config's scheme wins (plain HTTP registries); else loopback is probed, as containerd's resolver does, and TLS is the rule.
    const scheme = base.device?.backend?.config?.scheme ?? (LOOPBACK.test(ref.host) ? await insecureScheme(ref.host) : 'https')
    const backendConfig = { ...(base.device?.backend?.config ?? {}), scheme, host: ref.host, repo: ref.repo }
    return {
      // A blob missing from the registry fails the container start, not a read inside it.
      check_blobs: true,
      ...base,
      device: {
        ...(base.device ?? {}),
        backend: { ...(base.device?.backend ?? {}), type: 'registry', config: backendConfig },
        cache: base.device?.cache ?? { type: 'blobcache', config: { work_dir: cacheDir } }
      }
    }
  }
}

/** PUT /api/v1/daemon/exit on a nydusd's API socket. */
async function putExit(sock: string): Promise<void> {
  const r = await nydusdApi(sock, 'PUT', '/api/v1/daemon/exit')
  if (r.status === 0) throw new SnapshotterError('ERR_INTERNAL', `nydusd at ${sock}: ${r.body}`)
  if (r.status !== 204) throw new SnapshotterError('ERR_INTERNAL', `nydusd at ${sock} refused to exit: HTTP ${r.status}`)
}

/** The nydusd on `sock` is `pid` and running. */
async function answers(sock: string, pid: number): Promise<boolean> {
  const r = await nydusdApi(sock, 'GET', '/api/v1/daemon')
  return /"state":"RUNNING"/.test(r.body) && r.body.includes(`"id":"${pid}"`)
}
