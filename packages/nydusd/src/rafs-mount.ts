import { NydusError, withContext } from '@nydusjs/errors'
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import type Fuse from 'fuse-native'
import type { Logger } from 'pino'
import { loadDigester, type BootstrapReader } from '@nydusjs/rafs/read'
import { ChunkCache, type ChainBackend } from '@nydusjs/storage/local'
import { makeBackend } from './backend-config.js'
import { checkBlobs } from './blob-check.js'
import { ChunkFetcher } from './chunk-fetcher.js'
import type { NydusdConfig } from './config.js'
import { NydusdError } from './errors.js'
import { DevFuseSession, type RequestHandler } from './fuse/dev-fuse.js'
import { SessionKeeper } from './fuse/session-keeper.js'
import { RafsLowLevel } from './fuse/lowlevel.js'
import { type PassthroughFiles, passthroughFiles } from './fuse/passthrough.js'
import { FuseSessionWatch, fuseFds } from './fuse-session.js'
import { DaemonMetrics } from './metrics.js'
import { checkMountpoint, mayAllowOther, mountTypeAt, openBootstrap, RootLister } from './mountpoint.js'
import { Prefetcher } from './prefetch.js'
import { RafsFs } from './rafs-fs.js'

export interface MountOptions {
  config: NydusdConfig
  bootstrap: string
  mountpoint: string
  prefetch?: boolean
  /** `direct`: our own /dev/fuse session (root only); `fuse-native`: libfuse 2 through fuse-native. Default: direct as root. */
  fuseTransport?: FuseTransportName
  /**
   * Direct transport only: a SessionKeeper beside the daemon, started with this command line. With
   * `failover` it starts the daemon again on the same /dev/fuse descriptor when this one dies;
   * with `hold` it keeps the descriptor for the next shared daemon; else it detaches the mount (auto_unmount).
   */
  keeper?: { argv: string[]; failover: boolean; hold?: boolean; pidFile?: string }
  /** Take over the FUSE session on this inherited descriptor instead of mounting (set by the keeper). */
  fuseFd?: number
  log: Logger
}

export type FuseTransportName = 'direct' | 'fuse-native'

/** The default transport: direct where this process can mount FUSE itself (root), fuse-native (fusermount) elsewhere. */
export const defaultTransport = (): FuseTransportName => (process.getuid?.() === 0 ? 'direct' : 'fuse-native')

/**
 * Mount options, chosen for an immutable image: the kernel keeps pages and
 * attributes (kernel_cache, long timeouts), reads come in 1 MiB requests,
 * st_ino comes from the bootstrap (use_ino, so hard links share it), and the
 * kernel refuses writes itself (ro).
 */
export const MOUNT_OPTIONS = {
  kernelCache: true,
  attrTimeout: 3600,
  entryTimeout: 3600,
  maxRead: 1024 * 1024,
  fsname: 'nydusd',
  subtype: 'rafs',
  allowOther: true,
  defaultPermissions: true
}
const EXTRA_OPTIONS = ['ro', 'use_ino', 'big_writes']

/** Mountpoints this process mounted and has not unmounted: what a fatal error must detach (see cli). */
export const liveMounts = new Set<string>()

/**
 * One image served at one mountpoint: its bootstrap, backend chain, cache,
 * FUSE session and metrics. A daemon holds one (dedicated) or many (shared);
 * nothing here is shared with another mount, so one failing (a dead backend,
 * an aborted session) leaves the others alone.
 */
export class RafsMount {
  private fuse?: Fuse
  private direct?: DevFuseSession
  private passthrough?: PassthroughFiles
  private keeper?: SessionKeeper
  private prefetcher?: Prefetcher
  private session?: FuseSessionWatch
  private sessionEnded = false
  private endedResolve!: () => void
  /** Settles when the kernel ends the FUSE session without us (external umount). */
  readonly ended = new Promise<void>(resolve => {
    this.endedResolve = resolve
  })
  state: 'INIT' | 'RUNNING' | 'STOPPED' = 'INIT'

  private constructor(
    private readonly o: MountOptions,
    readonly reader: BootstrapReader,
    readonly fs: RafsFs,
    readonly fetcher: ChunkFetcher,
    private readonly backend: ChainBackend,
    readonly metrics: DaemonMetrics,
    readonly log: Logger
  ) {}

  get mountpoint(): string {
    return this.o.mountpoint
  }

  /** Lets the memory tier's buffers go once nobody read for `memory.idle_release_secs`; true if it did now. */
  releaseIdle(): boolean {
    const secs = this.o.config.memory.idle_release_secs
    if (secs <= 0 || !this.fetcher.releaseIdle(secs * 1000)) return false
    this.reader.dropPages()
    return true
  }

  /** The SessionKeeper's pid (direct transport). */
  get keeperPid(): number | undefined {
    return this.keeper?.pid
  }

  /** Chunks asked for so far. */
  get requests(): number {
    return this.fetcher.requests
  }

  static async start(o: MountOptions): Promise<RafsMount> {
    const log = o.log.child({ mountpoint: o.mountpoint })
    const reader = await openBootstrap(o.bootstrap)
    try {
      return await RafsMount.startWith(o, reader, log)
    } catch (err) {
      reader.close()
      throw err
    }
  }

  private static async startWith(o: MountOptions, reader: BootstrapReader, log: Logger): Promise<RafsMount> {
    // A takeover finds the mountpoint mounted: that is the session it inherits.
    if (o.fuseFd === undefined) await checkMountpoint(o.mountpoint)
    const c = o.config.device.cache
    const cache = c === undefined ? undefined : await ChunkCache.open(c.config.work_dir, { sizeLimit: c.config.size_limit })
    const metrics = new DaemonMetrics(o.mountpoint)
    const backend = await makeBackend(o.config, metrics, log).catch((err: unknown) => {
      throw err instanceof NydusError ? withContext(err, 'backend') : err
    })
    if (o.config.check_blobs)
      await checkBlobs(reader.blobs(), backend, log).catch(async (err: unknown) => {
        await backend.close()
        throw err
      })
    // Read from the bootstrap when needed: a table of objects would cost a shared daemon about 1 MB per mounted image.
    const chunks = { length: reader.sb.chunkCount, at: (i: number) => reader.chunk(i) }
    const fetcher = new ChunkFetcher({
      backend,
      cache,
      blobs: reader.blobs(),
      chunks,
      digester: await loadDigester(reader.sb.digester),
      digestValidate: o.config.digest_validate,
      mergingSize: o.config.fs_prefetch.merging_size,
      amplifyIo: o.config.amplify_io,
      memoryCacheSize: o.config.memory.cache_size,
      metrics,
      log
    })
    const fs = new RafsFs(reader, fetcher, metrics, log, o.config.enable_xattr)
    const m = new RafsMount(o, reader, fs, fetcher, backend, metrics, log)
    try {
      await m.mount()
    } catch (err) {
      await fetcher.close()
      await backend.close()
      throw err
    }
    m.startPrefetch()
    return m
  }

  private async mount(): Promise<void> {
    const lister = new RootLister(this.o.mountpoint)
    try {
      if ((this.o.fuseTransport ?? defaultTransport()) === 'direct') await this.mountDirect()
      else await this.mountFuseNative()
    } catch (err) {
      lister.cancel()
      throw err
    }
    liveMounts.add(this.o.mountpoint)
    this.state = 'RUNNING'
    await this.warmUp(lister)
    this.log.info(
      {
        bootstrap: this.o.bootstrap,
        backend: this.o.config.device.backend.type,
        inodes: this.reader.inodeCount,
        transport: this.direct === undefined ? 'fuse-native' : 'direct',
        requests: this.direct?.readerKind
      },
      'mounted'
    )
  }

  private async mountDirect(): Promise<void> {
    const ll = new RafsLowLevel(this.fs, this.reader, this.fetcher.pool, this.metrics, this.log, this.o.config.enable_xattr)
    // Before the mount: an OPEN answered ENOSYS once is never sent again.
    this.passthrough = passthroughFiles(this.o.config, this.fetcher, this.log)
    if (this.passthrough !== undefined) ll.usePassthrough(this.passthrough)
    const handler: RequestHandler = (h, body, reply) => ll.handle(h, body, reply)
    const passthrough = this.passthrough !== undefined
    this.direct =
      this.o.fuseFd === undefined
        ? await DevFuseSession.mount(this.o.mountpoint, handler, this.log, { passthrough })
        : DevFuseSession.adopt(this.o.fuseFd, this.o.mountpoint, handler, this.log, passthrough)
    if (this.o.keeper !== undefined)
      this.keeper = SessionKeeper.start({ mountpoint: this.o.mountpoint, fd: this.direct.descriptor, ...this.o.keeper })
    void this.direct.ended.then(() => {
      if (this.state === 'STOPPED') return
      this.sessionEnded = true
      // An aborted connection (fusectl's abort) ends the session with the mount still there, dead: detach it.
      const dead = mountTypeAt(this.o.mountpoint) !== undefined
      if (dead) spawnSync('umount', ['-l', '--', this.o.mountpoint], { stdio: 'ignore', timeout: 5000 })
      this.log.warn(
        dead
          ? 'FUSE session ended: the connection was aborted; its dead mount was detached'
          : 'FUSE session ended: the mountpoint was unmounted from outside'
      )
      this.endedResolve()
    })
  }

  private async mountFuseNative(): Promise<void> {
    if (this.o.config.fuse_passthrough) this.log.warn('fuse_passthrough needs the direct transport: reads go through the daemon')
    const ops = this.fs.ops()
    const allowOther = mayAllowOther()
    if (!allowOther) this.log.info('not root and no user_allow_other in /etc/fuse.conf: only this user can read the mount')
    // Reads that wait get RafsFs's own timer, not fuse-native's.
    // Loaded here: a daemon on the direct transport never maps libfuse.
    const { default: FuseNative } = await import('fuse-native')
    const fuse = new FuseNative(this.o.mountpoint, ops, { ...MOUNT_OPTIONS, allowOther, force: false, mkdir: false, timeout: false })
    const base = fuse._fuseOptions.bind(fuse)
    fuse._fuseOptions = () => {
      const s = base()
      return s === '' ? `-o${EXTRA_OPTIONS.join(',')}` : `${s},${EXTRA_OPTIONS.join(',')}`
    }
    const before = await fuseFds()
    await new Promise<void>((resolve, reject) =>
      fuse.mount(err => {
        if (err !== null) reject(new NydusdError('ERR_MOUNT', `mounting ${this.o.mountpoint}: ${err.message}`, { cause: err }))
        else resolve()
      })
    )
    this.fuse = fuse
    this.session = await FuseSessionWatch.after(before)
    this.session?.start(() => {
      this.sessionEnded = true
      this.log.warn('FUSE session ended: the mountpoint was unmounted from outside')
      this.endedResolve()
    })
  }

  /**
   * A first FUSE round trip costs milliseconds (fuse-native's per-thread set-up,
   * cold JIT); spend it here on the root's metadata rather than on the first
   * reader, and on decoding and hashing a made-up chunk. No file data is
   * read, so nothing is fetched.
   */
  private async warmUp(lister: RootLister): Promise<void> {
    this.fetcher.warmUp()
    await lister.run()
  }

  private startPrefetch(): void {
    const p = this.o.config.fs_prefetch
    const all = this.o.prefetch === true || p.enable
    if (!all && this.reader.sb.prefetchCount === 0) return
    this.prefetcher = new Prefetcher(
      this.reader,
      this.fetcher,
      { all, threads: p.threads_count, bandwidthRate: p.bandwidth_rate },
      this.metrics,
      this.log
    )
    this.prefetcher.run().catch((err: Error) => this.log.error({ err: err.message }, 'prefetch stopped'))
  }

  /** What GET /api/v1/daemon and /api/v1/mount report of this mount. */
  info(): Record<string, unknown> {
    return {
      mountpoint: this.o.mountpoint,
      state: this.state,
      bootstrap: this.o.bootstrap,
      fs_type: 'rafs',
      backend: {
        type: this.o.config.device.backend.type,
        links: this.backend.links.map(l => l.name),
        open_breakers: this.backend.openLinks()
      },
      root_digest: this.reader.sb.rootDigest.toString('hex'),
      transport: this.direct === undefined ? 'fuse-native' : 'direct',
      /** Direct transport: 'poll' (the main thread reads /dev/fuse when libuv says it is readable) or 'pool'. */
      fuse_reader: this.direct?.readerKind,
      passthrough: {
        enabled: this.passthrough !== undefined && this.direct?.passthrough === true,
        opens: this.passthrough?.opened ?? 0,
        files_written: this.passthrough?.written ?? 0
      }
    }
  }

  prefetchStatus(): unknown {
    return this.prefetcher?.status ?? { state: 'idle', totalChunks: 0, doneChunks: 0, failedChunks: 0, bytes: 0 }
  }

  /** A keeper holds this session for takeover (`--failover`, or this daemon is a successor). */
  get kept(): boolean {
    return this.direct !== undefined && (this.o.keeper?.failover === true || this.o.fuseFd !== undefined)
  }

  /**
   * An exit that leaves the mount to a successor (an upgrade): prefetch stops,
   * no new request is taken (they wait in the kernel), reads in flight are
   * answered (5 s at most) and cache writes land; whatever is still unanswered
   * when this process is gone the successor gets again (FUSE_NOTIFY_RESEND).
   */
  async handOver(): Promise<void> {
    this.prefetcher?.stop()
    await this.direct?.stopReading()
    for (let i = 0; i < 100 && this.fetcher.foregroundInflight > 0; i++) await sleep(50)
    await this.fetcher.flush()
    this.log.info('exiting: the FUSE session goes to a successor')
  }

  async stop(): Promise<void> {
    if (this.state === 'STOPPED') return
    this.state = 'STOPPED'
    this.prefetcher?.stop()
    this.session?.stop()
    // A stop is never a crash: the keeper must neither take over nor detach (also when the session already ended).
    this.keeper?.release()
    if (!this.sessionEnded) await this.unmount()
    liveMounts.delete(this.o.mountpoint)
    await this.fetcher.close()
    await this.backend.close()
    this.reader.close()
    this.log.info('unmounted')
  }

  /** fusermount can hang on a wedged mount; stopping must not. */
  private async unmount(): Promise<void> {
    if (this.direct !== undefined) {
      await this.direct.unmount()
      return
    }
    const fuse = this.fuse
    if (fuse === undefined) return
    let timer: NodeJS.Timeout | undefined
    const done = new Promise<void>(resolve =>
      fuse.unmount(err => {
        if (err !== null) this.log.warn({ err: err.message }, 'unmount failed')
        resolve()
      })
    )
    const late = new Promise<void>(resolve => {
      timer = setTimeout(() => {
        this.log.warn('unmount did not finish within 5 s; going on')
        resolve()
      }, 5000)
    })
    await Promise.race([done, late])
    clearTimeout(timer)
  }
}
