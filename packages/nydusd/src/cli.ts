import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { loadConfig } from './config.js'
import { Nydusd, VERSION } from './daemon.js'

const USAGE = `nydusd ${VERSION}: mount a RAFS-TS image over FUSE, fetching chunks on demand

Usage: nydusd --config FILE --bootstrap FILE --mountpoint DIR [--apisock PATH] [--log-level info] [--prefetch]

  --config FILE      JSON config (device.backend, device.cache, digest_validate, fs_prefetch)
  --bootstrap FILE   the image bootstrap (nydus-image create/merge/convert output)
  --mountpoint DIR   an empty, unmounted directory
  --apisock PATH     serve the HTTP API on this unix socket
  --log-level LEVEL  trace, debug, info, warn, error (default info)
  --prefetch         fetch the whole image in the background (fs_prefetch.enable)

Runs in the foreground; SIGINT or SIGTERM unmounts and exits.`

export async function main (argv: string[]): Promise<number> {
  let args
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        bootstrap: { type: 'string' },
        mountpoint: { type: 'string' },
        apisock: { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        prefetch: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' }
      },
      strict: true
    }).values
  } catch (err) {
    return fail(`${(err as Error).message} (see --help)`)
  }
  if (args.help === true) { process.stdout.write(USAGE + '\n'); return 0 }
  if (args.version === true) { process.stdout.write(`nydusd ${VERSION}\n`); return 0 }
  for (const f of ['config', 'bootstrap', 'mountpoint'] as const) if (args[f] === undefined) return fail(`missing required flag --${f} (see --help)`)
  const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
  if (!levels.includes(args['log-level'])) return fail(`--log-level must be one of ${levels.join(', ')}`)
  const log = pino({ level: args['log-level'], base: { pid: process.pid } }, pino.destination(2))
  let daemon: Nydusd
  try {
    const config = await loadConfig(args.config!)
    daemon = await Nydusd.start({ config, bootstrap: args.bootstrap!, mountpoint: args.mountpoint!, apisock: args.apisock, prefetch: args.prefetch, log })
  } catch (err) {
    const e = err as Error & { code?: string }
    return fail(`${e.message}${e.code?.startsWith('ERR_') === true ? ` [${e.code}]` : ''}`)
  }
  await new Promise<void>(resolve => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping')
      daemon.stop().then(resolve, resolve)
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
  return 0
}

function fail (msg: string): number {
  process.stderr.write(`nydusd: error: ${msg}\n`)
  return 1
}
