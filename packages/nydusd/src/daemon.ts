import { spawnSync } from 'node:child_process'
import { closeSync } from 'node:fs'
import type { Server } from 'node:http'
import { isAbsolute } from 'node:path'
import { pino, type Logger } from 'pino'
import { startApi, type ApiHandlers } from './api.js'
import { type NydusdConfig, parseConfig } from './config.js'
import { NydusdError } from './errors.js'
import { isKeeperOf, takeFuseDescriptor } from './fuse/take-descriptor.js'
import { returnMemory } from './memory-release.js'
import { aggregate } from './prom.js'
import { mountTypeAt } from './mountpoint.js'
import { type HeldMount, SupervisorState } from './supervisor-state.js'
import { VerifyWorker } from './verify-worker.js'
import { defaultTransport, RafsMount, type FuseTransportName, type MountOptions } from './rafs-mount.js'

export const VERSION = '0.1.0'

export interface DaemonOptions {
  /** The image mounted at start (one daemon per image); none: the daemon waits for POST /api/v1/mount (shared). */
  image?: Omit<MountOptions, 'log'>
  apisock?: string
  /** The transport of mounts added through the API. */
  fuseTransport?: FuseTransportName
  /**
   * Shared: a file where the daemon keeps its mounts, whose sessions keepers hold when it dies;
   * a daemon started with the same file takes them over (nydus's `--supervisor`, a socket there).
   */
  supervisor?: string
  log?: Logger
}

/** POST /api/v1/mount's body, as nydusd takes it (`config` is the nydusd config, as a JSON string or an object). */
export interface MountRequest {
  source: string
  fs_type?: string
  config: string | Record<string, unknown>
}

/**
 * The daemon: its API and the mounts it serves. Started with an image it is
 * that image's daemon (and ends with its session); started without, it serves
 * whatever mounts the API adds (nydus's shared mode). Mounts start one at a
 * time; each lives and fails on its own.
 */
export class Nydusd {
  readonly mounts = new Map<string, RafsMount>()
  /** What each API mount was asked with (source and config as given): the supervisor file's content. */
  private readonly requested = new Map<string, { source: string; config: Record<string, unknown> }>()
  private readonly state?: SupervisorState
  private api?: Server
  private queue: Promise<unknown> = Promise.resolve()
  private exitResolve!: () => void
  private idleTimer?: NodeJS.Timeout
  /** Chunks asked for by every mount at the last idle tick, and whether any were since the last collection. */
  private lastRequests = 0
  private readSinceCollect = false
  /** Settles on PUT /api/v1/daemon/exit. */
  readonly exitRequested = new Promise<void>(resolve => {
    this.exitResolve = resolve
  })
  /** The image's daemon: settles when the kernel ends its session without us. A shared daemon: never. */
  ended: Promise<void> = new Promise(() => {})

  private constructor(
    private readonly o: DaemonOptions,
    readonly log: Logger
  ) {
    if (o.supervisor !== undefined) this.state = new SupervisorState(o.supervisor)
  }

  static async start(o: DaemonOptions): Promise<Nydusd> {
    const d = new Nydusd(o, o.log ?? pino({ level: 'info' }))
    if (o.image !== undefined) {
      const m = await RafsMount.start({ ...o.image, log: d.log })
      d.mounts.set(m.mountpoint, m)
      d.ended = m.ended
    }
    // Before the API answers: a supervisor asking for a mount must find it served, not detach it.
    if (d.state !== undefined) await d.takeOver(d.state)
    if (o.apisock !== undefined) d.api = await startApi(o.apisock, d.apiHandlers(), d.log)
    d.idleTimer = setInterval(() => d.releaseIdle(), 2000).unref()
    if (o.image === undefined) d.log.info({ apisock: o.apisock }, 'waiting for mounts')
    return d
  }

  /** The image of a daemon started with one (else the first mount). */
  get primary(): RafsMount | undefined {
    return this.mounts.values().next().value
  }

  /**
   * Every 2 s: mounts nobody read from for `memory.idle_release_secs` let
   * their buffers go; and once a burst of reads is over (no chunk asked for
   * since the last tick), its garbage is collected at once. Dropped chunk
   * buffers live outside V8's heap, so V8 alone would let some 64 MB of
   * them pile up before collecting, and never collect in an idle process.
   */
  private releaseIdle(): void {
    let released = false
    let requests = 0
    for (const m of this.mounts.values()) {
      released = m.releaseIdle() || released
      requests += m.requests
    }
    const moved = requests !== this.lastRequests
    const burstOver = !moved && this.readSinceCollect
    this.readSinceCollect = moved
    this.lastRequests = requests
    if (!released && !burstOver) return
    VerifyWorker.stopIdle()
    returnMemory()
  }

  /** Adds a mount (POST /api/v1/mount). Unknown fs types, bad configs and busy mountpoints change nothing. */
  async mount(mountpoint: string | undefined, req: unknown): Promise<RafsMount> {
    const { mnt, body } = checkMountRequest(mountpoint, req)
    const raw = typeof body.config === 'string' ? parseJson(body.config, mnt) : body.config
    const config = parseConfig(raw, `of mount ${mnt}`)
    return await this.serialized(async () => await this.add(mnt, body.source, config, raw as Record<string, unknown>))
  }

  /** Mounts start one at a time. */
  private async serialized<T>(run: () => Promise<T>): Promise<T> {
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => {})
    return await p
  }

  private async add(mnt: string, source: string, config: NydusdConfig, raw: Record<string, unknown>, fuseFd?: number) {
    if (this.mounts.has(mnt)) throw new NydusdError('ERR_MOUNTPOINT_BUSY', `mountpoint ${mnt} is busy: this daemon serves it`)
    const transport = fuseFd !== undefined ? 'direct' : (this.o.fuseTransport ?? defaultTransport())
    const m = await RafsMount.start({
      config,
      bootstrap: source,
      mountpoint: mnt,
      fuseTransport: transport,
      fuseFd,
      // If this daemon dies its mounts are detached (auto_unmount), or with a supervisor file held for the next.
      keeper: transport === 'direct' ? { argv: [], failover: false, hold: this.state !== undefined } : undefined,
      log: this.log
    })
    this.mounts.set(mnt, m)
    this.requested.set(mnt, { source, config: raw })
    this.saveState()
    void m.ended.then(() => {
      if (this.mounts.get(mnt) !== m) return
      this.mounts.delete(mnt)
      this.requested.delete(mnt)
      this.saveState()
    })
    return m
  }

  /**
   * A shared daemon started after one that died: each mount in the supervisor
   * file is taken over from its keeper (the mount never went away; readers
   * waited). One that cannot be is detached, and the others go on.
   */
  private async takeOver(state: SupervisorState): Promise<void> {
    for (const h of state.read()) {
      try {
        await this.adoptHeld(h, state.path)
        this.log.info({ mountpoint: h.mountpoint, keeper: h.keeper }, 'mount taken over from a dead daemon')
      } catch (err) {
        this.log.error({ mountpoint: h.mountpoint, err: (err as Error).message }, 'mount not taken over: detached')
        // Only a rafs FUSE mount: the path came from a file.
        if (mountTypeAt(h.mountpoint) === 'fuse.rafs') spawnSync('umount', ['-l', '--', h.mountpoint], { stdio: 'ignore', timeout: 5000 })
      }
      // Taken (or detached): the keeper may go. Only if it is one: the pid came from a file.
      if (isKeeperOf(h.keeper, h.mountpoint)) signal(h.keeper, 'SIGUSR1')
    }
    this.saveState()
  }

  private async adoptHeld(h: HeldMount, file: string): Promise<void> {
    const config = parseConfig(h.config, `of mount ${h.mountpoint} in ${file}`)
    const fd = takeFuseDescriptor(h.keeper, 3, h.mountpoint)
    try {
      await this.add(h.mountpoint, h.source, config, h.config, fd)
    } catch (err) {
      closeSync(fd)
      throw err
    }
  }

  private saveState(): void {
    if (this.state === undefined) return
    const mounts = [...this.mounts].flatMap(([mnt, m]) => {
      const r = this.requested.get(mnt)
      return r === undefined || m.keeperPid === undefined ? [] : [{ mountpoint: mnt, ...r, keeper: m.keeperPid }]
    })
    try {
      this.state.write(mounts)
    } catch (err) {
      this.log.error({ file: this.state.path, err: (err as Error).message }, 'supervisor state not written')
    }
  }

  /** Removes a mount (DELETE /api/v1/mount): unmounted, its backend and cache closed. */
  async umount(mountpoint: string | undefined): Promise<void> {
    if (mountpoint === undefined) throw new NydusdError('ERR_BAD_ARGUMENT', 'DELETE /api/v1/mount: missing ?mountpoint=')
    const m = this.mounts.get(mountpoint)
    if (m === undefined) throw new NydusdError('ERR_MOUNT_NOT_FOUND', `no mount at ${mountpoint} in this daemon`)
    this.mounts.delete(mountpoint)
    this.requested.delete(mountpoint)
    this.saveState()
    await m.stop()
  }

  private mountOf(id: string | undefined): RafsMount {
    const m = id === undefined ? this.primary : this.mounts.get(id)
    if (m === undefined)
      throw new NydusdError('ERR_MOUNT_NOT_FOUND', id === undefined ? 'this daemon serves no mount' : `no mount at ${id}`)
    return m
  }

  private apiHandlers(): ApiHandlers {
    return {
      daemon: () => {
        const mounts = [...this.mounts.values()].map(m => m.info())
        return {
          id: String(process.pid),
          version: { package_ver: VERSION },
          state: this.primary?.state ?? 'RUNNING',
          mode: this.o.image === undefined ? 'shared' : 'dedicated',
          // A dedicated daemon's image, at the top as before.
          ...(this.o.image === undefined ? {} : mounts[0]),
          mounts
        }
      },
      metrics: async () => {
        const all = await Promise.all([...this.mounts.values()].map(m => m.metrics.registry.getMetricsAsJSON()))
        const merged = aggregate(all)
        return { contentType: merged.contentType, body: await merged.metrics() }
      },
      files: id => this.mountOf(id).fs.access.list(),
      prefetch: id => this.mountOf(id).prefetchStatus(),
      mounts: () => [...this.mounts.values()].map(m => m.info()),
      mount: async (mnt, body) => (await this.mount(mnt, body)).info(),
      umount: async mnt => await this.umount(mnt),
      exit: () => this.exitResolve()
    }
  }

  /** The image's session is held by a keeper for takeover (`--failover`, or this daemon is a successor). */
  get kept(): boolean {
    return this.o.image !== undefined && this.primary?.kept === true
  }

  /** An exit that leaves the mount to a successor (see RafsMount.handOver). */
  async handOver(): Promise<void> {
    for (const m of this.mounts.values()) await m.handOver()
    await this.closeApi()
  }

  async stop(): Promise<void> {
    clearInterval(this.idleTimer)
    await Promise.all([...this.mounts.values()].map(async m => await m.stop()))
    this.mounts.clear()
    this.saveState()
    await this.closeApi()
  }

  private async closeApi(): Promise<void> {
    await new Promise<void>(resolve => (this.api === undefined ? resolve() : this.api.close(() => resolve())))
  }
}

function checkMountRequest(mountpoint: string | undefined, req: unknown): { mnt: string; body: MountRequest } {
  if (mountpoint === undefined || !isAbsolute(mountpoint))
    throw new NydusdError(
      'ERR_BAD_ARGUMENT',
      `POST /api/v1/mount: ?mountpoint= must be an absolute path, not ${JSON.stringify(mountpoint ?? '')}`
    )
  const b = req as Partial<MountRequest> | null
  const where = `mount request for ${mountpoint}`
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new NydusdError('ERR_BAD_ARGUMENT', `${where}: the body must be a JSON object`)
  if (typeof b.source !== 'string' || b.source === '')
    throw new NydusdError('ERR_BAD_ARGUMENT', `${where}: "source" (the bootstrap file) must be a non-empty string`)
  if (b.fs_type !== undefined && b.fs_type !== 'rafs')
    throw new NydusdError('ERR_BAD_ARGUMENT', `${where}: fs_type ${JSON.stringify(b.fs_type)} is not supported (only "rafs")`)
  if (typeof b.config !== 'string' && (typeof b.config !== 'object' || b.config === null || Array.isArray(b.config)))
    throw new NydusdError('ERR_BAD_ARGUMENT', `${where}: "config" must be the nydusd config, as a JSON string or object`)
  return { mnt: mountpoint.replace(/(.)\/+$/, '$1'), body: b as MountRequest }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {}
}

function parseJson(text: string, mnt: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new NydusdError('ERR_CONFIG', `config of mount ${mnt}: invalid JSON (${(err as Error).message})`)
  }
}
