import { errorCode, exitCodeOf, oneLine, statusOf } from '@nydusjs/errors'
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { pino, type Logger } from 'pino'
import { loadConfig } from './config.js'
import { Nydusd, VERSION } from './daemon.js'
import { defaultTransport, type FuseTransportName, liveMounts } from './rafs-mount.js'
import { EXIT_HANDOVER } from './fuse/session-keeper.js'
import { tuneMalloc } from './memory-release.js'

const USAGE = `nydusd ${VERSION}: mount a RAFS-TS image over FUSE, fetching chunks on demand

Usage: nydusd --config FILE --bootstrap FILE --mountpoint DIR [--apisock PATH] [--log-level info] [--prefetch]
       nydusd --image REGISTRY/REPO:TAG --mountpoint DIR [--config FILE] [--insecure] [--platform OS/ARCH] [--work-dir DIR] ...
       nydusd --apisock PATH [--supervisor FILE] [--fuse-transport T]
                     (shared: no image; mounts come through POST /api/v1/mount)

  --config FILE      JSON config (device.backend, device.cache, digest_validate, fs_prefetch)
  --bootstrap FILE   the image bootstrap (nydus-image create/merge/convert output)
  --image REF        a converted image in a registry: its bootstrap is pulled and its blobs
                     read lazily from the same repository (a config is optional then)
  --insecure         with --image: plain HTTP, or HTTPS without certificate checks
  --platform P       with --image: the platform to pick from an index (default: this machine's)
  --work-dir DIR     with --image: where the bootstrap and the blob cache go (default: TMPDIR/nydusd)
  --mountpoint DIR   an empty, unmounted directory
  --apisock PATH     serve the HTTP API on this unix socket
  --log-level LEVEL  trace, debug, info, warn, error (default info)
  --prefetch         fetch the whole image in the background (fs_prefetch.enable)
  --fuse-transport T direct (our own /dev/fuse session: 1 MiB reads, zero-message opens; root
                     only; the default as root) or fuse-native (libfuse 2 through fusermount)
  --pid-file PATH    write this process's pid there once mounted (a takeover rewrites it)
  --failover         direct transport: if this daemon dies, a new one takes over its FUSE
                     session (the mount stays; readers wait, then go on); without it, a
                     daemon that dies has its mount detached (auto_unmount)
  --supervisor FILE  shared: keep the mounts in FILE, and if this daemon dies hold their FUSE
                     sessions (60 s) for the next one started with FILE, which takes them over

Runs in the foreground; SIGINT or SIGTERM unmounts and exits, as does an unmount from outside.`

export async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseCli>
  try {
    args = parseCli(argv)
  } catch (err) {
    return fail(`${(err as Error).message} (see --help)`)
  }
  if (args.help === true) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (args.version === true) {
    process.stdout.write(`nydusd ${VERSION}\n`)
    return 0
  }
  if (args.image !== undefined && args.bootstrap !== undefined) return fail('--image and --bootstrap exclude each other')
  const shared = args.image === undefined && args.bootstrap === undefined && args.mountpoint === undefined
  if (shared && args.apisock === undefined)
    return fail('missing required flag --bootstrap (or --apisock alone, for a shared daemon) (see --help)')
  if (!shared && args.supervisor !== undefined) return fail('--supervisor is for a shared daemon (--apisock alone)')
  const required = shared ? [] : args.image === undefined ? (['config', 'bootstrap', 'mountpoint'] as const) : (['mountpoint'] as const)
  for (const f of required) if (args[f] === undefined) return fail(`missing required flag --${f} (see --help)`)
  const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
  if (!levels.includes(args['log-level'])) return fail(`--log-level must be one of ${levels.join(', ')}`)
  const transport = (args['fuse-transport'] ?? defaultTransport()) as FuseTransportName
  if (args['fuse-fd'] !== undefined && !/^\d+$/.test(args['fuse-fd'])) return fail(`--fuse-fd must be a descriptor number`)
  if (transport !== 'direct' && transport !== 'fuse-native')
    return fail(`--fuse-transport must be direct or fuse-native, not ${JSON.stringify(transport)}`)
  if (args.supervisor !== undefined && transport !== 'direct') return fail('--supervisor needs --fuse-transport direct')
  const log = pino({ level: args['log-level'], base: { pid: process.pid } }, pino.destination(2))
  if (!tuneMalloc()) log.debug('libc could not be loaded: malloc keeps its defaults')
  // Caught from the start: a signal that lands while mounting (before start returns) would
  // otherwise kill the process with the mount left behind, dead or wedged.
  const stopRequested = stopSignal()
  process.once('uncaughtException', err => {
    detachAndExit(err, log)
  })
  let daemon: Nydusd
  try {
    let config = args.config === undefined ? undefined : await loadConfig(args.config)
    let bootstrap = args.bootstrap
    if (args.image !== undefined) {
      const { prepareImage } = await import('./image-source.js')
      const img = await Promise.race([
        prepareImage(args.image, { config, insecure: args.insecure, platform: args.platform, workDir: args['work-dir'] }),
        stopRequested.then(why => {
          throw new Error(`stopped by ${why} before mounting`)
        })
      ])
      log.info({ image: args.image, digest: img.digest }, 'pulled bootstrap')
      config = img.config
      bootstrap = img.bootstrap
    }
    const image = shared
      ? undefined
      : {
          config: config!,
          bootstrap: bootstrap!,
          mountpoint: args.mountpoint!,
          prefetch: args.prefetch,
          fuseTransport: transport,
          // A successor (started by a keeper, which holds its session) starts no keeper of its own.
          keeper:
            transport === 'direct' && process.env.NYDUSD_KEEPER_PID === undefined
              ? { argv: [process.execPath, ...process.argv.slice(1)], failover: args.failover, pidFile: args['pid-file'] }
              : undefined,
          fuseFd: args['fuse-fd'] === undefined ? undefined : Number(args['fuse-fd'])
        }
    daemon = await Nydusd.start({ image, apisock: args.apisock, fuseTransport: transport, supervisor: args.supervisor, log })
  } catch (err) {
    return fail(oneLine(err), errorCode(err) === undefined ? 1 : statusOf(err).exit)
  }
  if (args['pid-file'] !== undefined) await writeFile(args['pid-file'], String(process.pid)).catch(() => {})
  const why = await Promise.race([stopRequested, daemon.ended.then(() => 'unmounted'), daemon.exitRequested.then(() => 'exit')])
  if (why === 'exit' && daemon.kept) {
    await daemon.handOver()
    return EXIT_HANDOVER
  }
  log.info({ why }, 'stopping')
  await daemon.stop().catch((err: Error) => log.error({ err: err.message }, 'stopping failed'))
  return 0
}

/**
 * A bug must not leave a dead mount behind: once this process is gone, every
 * access to it fails with ENOTCONN until someone unmounts it by hand. The
 * mount is detached (lazily: no answer from this process is needed), then the
 * process exits.
 */
function detachAndExit(err: Error, log: Logger): never {
  log.fatal({ err: err.message, stack: err.stack }, 'internal error: detaching the mount and exiting')
  for (const mnt of liveMounts) spawnSync('fusermount', ['-uz', '--', mnt], { stdio: 'ignore', timeout: 5000 })
  process.stderr.write(
    `nydusd: error: internal error: ${err.message}${liveMounts.size > 0 ? ` (${[...liveMounts].join(', ')} detached)` : ''}\n`
  )
  process.exit(exitCodeOf('ERR_INTERNAL'))
}

/** Settles with the name of the first SIGINT or SIGTERM. */
async function stopSignal(): Promise<string> {
  return await new Promise(resolve => {
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('SIGTERM', () => resolve('SIGTERM'))
  })
}

/** One line on stderr; the exit code is the error table's (2 for usage). */
function fail(msg: string, exit = 2): number {
  process.stderr.write(`nydusd: error: ${msg}\n`)
  return exit
}

function parseCli(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      bootstrap: { type: 'string' },
      image: { type: 'string' },
      insecure: { type: 'boolean', default: false },
      platform: { type: 'string' },
      'work-dir': { type: 'string' },
      mountpoint: { type: 'string' },
      apisock: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      prefetch: { type: 'boolean', default: false },
      'fuse-transport': { type: 'string' },
      failover: { type: 'boolean', default: false },
      'pid-file': { type: 'string' },
      'fuse-fd': { type: 'string' },
      supervisor: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' }
    },
    strict: true
  }).values
}
