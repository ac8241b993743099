import { parseArgs } from 'node:util'
import { oneLine } from '@nydusjs/errors'
import { pino, type Logger } from 'pino'

export function logger(level = 'info', name: string): Logger {
  // Synchronous: a CLI's last lines must not be lost when it exits.
  return pino({ level, base: { pid: process.pid, name } }, pino.destination({ dest: 2, sync: true }))
}

export function fail(prog: string, err: unknown, code = 1): number {
  process.stderr.write(`${prog}: error: ${oneLine(err)}\n`)
  return code
}

/** Resolves on SIGINT or SIGTERM. */
export const untilSignal = async (): Promise<string> =>
  await new Promise(resolve => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve(s))
  })

/** A positive number of a flag, or a clear error naming it. */
export function num(name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} ${JSON.stringify(v)}: want a number >= ${min}`)
  return n
}

/** "10M", "800K", "1G" (bytes per second, as dfget's --totallimit), or a plain number. */
export function rate(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)B?$/i.exec(v.trim())
  if (m === null) throw new Error(`--${name} ${JSON.stringify(v)}: want a rate like 20M, 800K or 1G (bytes per second)`)
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G']
  return Math.floor(Number(m[1]) * unit)
}

/**
 * A daemon's flags: every name a string flag (plus --log-level and -h/--help).
 * An exit code instead when there is nothing to run: 0 after printing the
 * usage for --help, 2 after one line for an unknown or malformed flag.
 */
export function daemonFlags(prog: string, argv: string[], names: string[], usage: string): Record<string, string | undefined> | number {
  let v: Record<string, string | boolean | undefined>
  try {
    const options = Object.fromEntries([...names, 'log-level'].map(n => [n, { type: 'string' as const }]))
    v = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true }).values
  } catch (err) {
    return fail(prog, `${(err as Error).message} (see --help)`, 2)
  }
  if (v.help === true) {
    process.stdout.write(`${usage}\n`)
    return 0
  }
  return v as Record<string, string | undefined>
}
