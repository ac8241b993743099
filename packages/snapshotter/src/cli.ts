import { mkdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { errorCode, oneLine, statusOf } from '@nydusjs/errors'
import { pino } from 'pino'
import { loadConfig, parseListenAddress, type SnapshotterConfig } from './config.js'
import { SnapshotterMetrics } from './metrics.js'
import { listen, systemApi } from './system-api.js'
import { SnapshotterError } from './errors.js'
import { serveSnapshots } from './server.js'
import { NydusdManager } from './nydusd-manager.js'
import { OverlaySnapshotter } from './snapshotter.js'

const USAGE = `containerd-nydus-grpc: a containerd proxy snapshotter

Usage: containerd-nydus-grpc [--config FILE] [--root DIR] [--address SOCK] [--log-level info]

  --config FILE     config.toml (root, address, [log] level); flags override it
  --root DIR        state and snapshots (default /var/lib/containerd-nydus)
  --address SOCK    the gRPC socket containerd's proxy_plugins entry names
                    (default /run/containerd-nydus/containerd-nydus-grpc.sock)
  --log-level L     trace, debug, info, warn, error
  --nydusd-path P   the nydusd bin for converted images (default: this install's)
  --nydusd-config F nydusd's JSON config for every image; its backend is filled
                    in from the image reference (default: registry + blobcache)
  --recover-policy P  restart (a dead nydusd is started again), failover (a new nydusd takes
                    its FUSE session over: running containers notice nothing) or none
  --daemon-mode M   dedicated (one nydusd per image) or shared (one nydusd for the node)
  --enable-nydus-overlayfs  Kata's mounts: fuse.nydus-overlayfs with extraoption=

config.toml also takes [metrics] address ("127.0.0.1:9110": GET /metrics)
and [system] enable, address (GET /api/v1/daemons, /metrics on a unix socket).

SIGINT or SIGTERM stop it; snapshots stay on disk for the next start.`

export async function main(argv: string[]): Promise<number> {
  let flags: ReturnType<typeof parse>
  try {
    flags = parse(argv)
  } catch (err) {
    return fail(`${(err as Error).message} (see --help)`, 2)
  }
  if (flags.help === true) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  try {
    const cfg = await loadConfig(flags.config)
    const policy = flags['recover-policy'] ?? cfg.daemon.recover_policy
    if (policy !== 'restart' && policy !== 'failover' && policy !== 'none')
      throw new SnapshotterError('ERR_CONFIG', `--recover-policy ${JSON.stringify(policy)}: want restart, failover or none`)
    const mode = flags['daemon-mode'] ?? cfg.daemon_mode
    if (mode !== 'dedicated' && mode !== 'shared')
      throw new SnapshotterError('ERR_CONFIG', `--daemon-mode ${JSON.stringify(mode)}: want dedicated or shared`)
    const root = flags.root ?? cfg.root
    const address = flags.address ?? cfg.address
    const log = pino({ level: flags['log-level'] ?? cfg.log.level, base: { pid: process.pid } }, pino.destination(2))
    // Node's recursive mkdir loops forever on procfs and sysfs: such a root is refused by name.
    if (/^\/(proc|sys)(\/|$)/.test(resolve(root)))
      throw new SnapshotterError('ERR_CONFIG', `root ${root} is on /proc or /sys; give a directory on a real filesystem`)
    for (const d of [root, dirname(address)]) {
      await mkdir(d, { recursive: true, mode: 0o700 }).catch((err: Error) => {
        throw new SnapshotterError('ERR_CONFIG', `cannot create ${d}: ${err.message}`)
      })
    }
    const nydusd = new NydusdManager({
      root,
      nydusdPath: flags['nydusd-path'] ?? cfg.daemon.nydusd_path ?? defaultNydusd(),
      nydusdConfig: flags['nydusd-config'] ?? cfg.daemon.nydusd_config,
      failover: policy === 'failover',
      daemonMode: mode,
      log
    })
    await nydusd.baseConfig()
    const sn = await OverlaySnapshotter.open(root, nydusd, {
      nydusOverlayfs: flags['enable-nydus-overlayfs'] ?? cfg.snapshot.enable_nydus_overlayfs,
      nativeFallback: cfg.snapshot.native_fallback,
      log
    })
    await sn.reconcile(policy !== 'none')
    if (policy !== 'none') {
      // Dead daemons come back within a second.
      const watch = setInterval(() => {
        nydusd.recover().catch(() => {})
      }, 1000)
      watch.unref()
    }
    const metrics = new SnapshotterMetrics(sn, nydusd)
    const apis = await startApis(cfg, address, metrics, nydusd)
    const server = await serveSnapshots(address, sn, log, metrics)
    log.info({ root, address }, 'serving')
    const sig = await new Promise<string>(resolve => {
      process.once('SIGINT', () => resolve('SIGINT'))
      process.once('SIGTERM', () => resolve('SIGTERM'))
    })
    log.info({ sig }, 'stopping')
    await new Promise<void>(resolve => server.tryShutdown(() => resolve()))
    for (const a of apis) a.close()
    await sn.close()
    return 0
  } catch (err) {
    return fail(oneLine(err), errorCode(err) === undefined ? 1 : statusOf(err).exit)
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      root: { type: 'string' },
      address: { type: 'string' },
      'log-level': { type: 'string' },
      'nydusd-path': { type: 'string' },
      'nydusd-config': { type: 'string' },
      'recover-policy': { type: 'string' },
      'daemon-mode': { type: 'string' },
      'enable-nydus-overlayfs': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  }).values
}

/** The system API on its unix socket, and /metrics on TCP when [metrics] address is set. */
async function startApis(cfg: SnapshotterConfig, address: string, metrics: SnapshotterMetrics, nydusd: NydusdManager) {
  const out = []
  if (cfg.system.enable) {
    const api = systemApi(metrics, nydusd)
    await listen(api, cfg.system.address || join(dirname(address), 'system.sock')).catch((err: Error) => {
      throw new SnapshotterError('ERR_CONFIG', `system API: ${err.message}`)
    })
    out.push(api)
  }
  if (cfg.metrics.address !== '') {
    const api = systemApi(metrics, nydusd)
    await listen(api, parseListenAddress(cfg.metrics.address)).catch((err: Error) => {
      throw new SnapshotterError('ERR_CONFIG', `metrics address ${cfg.metrics.address}: ${err.message}`)
    })
    out.push(api)
  }
  return out
}

/** The nydusd bin of the @nydusjs/nydusd package installed beside this one. */
function defaultNydusd(): string {
  return join(dirname(createRequire(import.meta.url).resolve('@nydusjs/nydusd')), '../../bin/nydusd.cjs')
}

function fail(msg: string, exit: number): number {
  process.stderr.write(`containerd-nydus-grpc: error: ${msg}\n`)
  return exit
}
