import { errorCode, statusOf } from '@nydusjs/errors'
import { Command, Errors, Flags } from '@oclif/core'
import { COMPRESSORS, DIGESTERS, isValidChunkSize, type CompressorName, type DigesterName } from '@nydusjs/rafs'
import { ConverterError } from '../errors.js'
import { Staged } from '../fsutil.js'

/** Every command: one-line errors on stderr with a non-zero exit, JSON written atomically. */
export abstract class BaseCommand extends Command {
  protected async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    if (err instanceof Errors.ExitError) throw err
    // A flag error counts as parsed: oclif would otherwise add a warning to the one-line error.
    this.parsed = true
    const lines = err.message
      .split('\n')
      .map(l => l.trim())
      .filter(l => l !== '' && !l.startsWith('See more help') && !l.startsWith('The following errors occurred'))
    const code = errorCode(err)
    process.stderr.write(`nydus-image ${this.id ?? ''}: error: ${lines.join('; ')}${code === undefined ? '' : ` [${code}]`}\n`)
    if (process.env.NYDUS_DEBUG !== undefined) process.stderr.write(`${err.stack ?? ''}\n`)
    // Flag errors are oclif's (exit 2); anything else without a code is a plain failure.
    process.exitCode = code !== undefined ? statusOf(err).exit : (err.oclif?.exit ?? 1)
  }

  protected print(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : text + '\n')
  }

  protected async writeJson(path: string | undefined, value: unknown): Promise<void> {
    if (path === undefined) return
    if (path === '-') {
      this.print(JSON.stringify(value, null, 2))
      return
    }
    const s = new Staged()
    try {
      await s.write(path, Buffer.from(JSON.stringify(value, null, 2) + '\n'))
      await s.commit()
    } catch (err) {
      await s.abort()
      throw err
    }
  }
}

export const buildFlags = {
  'chunk-size': Flags.string({ description: 'chunk size, a power of two from 0x1000 to 0x1000000', default: '0x100000' }),
  compressor: Flags.string({ description: 'chunk compressor', options: [...COMPRESSORS], default: 'zstd' }),
  digester: Flags.string({ description: 'digest algorithm of chunks and the merkle tree', options: [...DIGESTERS], default: 'sha256' }),
  'chunk-dict': Flags.string({ description: 'bootstrap whose chunks are referenced instead of stored again (repeatable)', multiple: true }),
  'output-json': Flags.string({ description: 'write a JSON summary to this file (- for stdout)' }),
  workers: Flags.integer({ description: 'hashing and compression threads (default: one per core)', min: 1, max: 64, hidden: true })
}

export function parseChunkSize(s: string): number {
  const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : Number.NaN
  if (!isValidChunkSize(n)) throw new ConverterError('ERR_BAD_ARGUMENT', `--chunk-size ${s} is not a power of two from 0x1000 to 0x1000000`)
  return n
}

export function buildOptions(flags: {
  'chunk-size': string
  compressor: string
  digester: string
  'chunk-dict'?: string[]
  workers?: number
}): {
  chunkSize: number
  compressor: CompressorName
  digester: DigesterName
  chunkDict: string[]
  workers?: number
} {
  return {
    chunkSize: parseChunkSize(flags['chunk-size']),
    compressor: flags.compressor as CompressorName,
    digester: flags.digester as DigesterName,
    chunkDict: flags['chunk-dict'] ?? [],
    workers: flags.workers
  }
}
