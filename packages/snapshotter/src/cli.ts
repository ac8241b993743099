import { mkdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { errorCode, oneLine, statusOf } from '@nydusjs/errors'
import { pino } from 'pino'
import { loadConfig } from './config.js'
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
      nydusdPath: flags['nydusd-path'] ?? defaultNydusd(),
      nydusdConfig: flags['nydusd-config'],
      log
    })
    const sn = await OverlaySnapshotter.open(root, nydusd)
    await sn.reconcile()
    // recover_policy "restart": dead daemons come back within a second.
    const watch = setInterval(() => {
      nydusd.recover().catch(() => {})
    }, 1000)
    watch.unref()
    const server = await serveSnapshots(address, sn, log)
    log.info({ root, address }, 'serving')
    const sig = await new Promise<string>(resolve => {
      process.once('SIGINT', () => resolve('SIGINT'))
      process.once('SIGTERM', () => resolve('SIGTERM'))
    })
    log.info({ sig }, 'stopping')
    await new Promise<void>(resolve => server.tryShutdown(() => resolve()))
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
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  }).values
}

/** The nydusd bin of the @nydusjs/nydusd package installed beside this one. */
function defaultNydusd(): string {
  return join(dirname(createRequire(import.meta.url).resolve('@nydusjs/nydusd')), '../../bin/nydusd.cjs')
}

function fail(msg: string, exit: number): number {
  process.stderr.write(`containerd-nydus-grpc: error: ${msg}\n`)
  return exit
}
