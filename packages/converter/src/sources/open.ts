import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { createGunzip } from 'node:zlib'
import { pipeline, type Readable } from 'node:stream'
import { DecompressStream } from 'zstd-napi'
import { ConverterError } from '../errors.js'
import { TarSource } from '@nydusjs/tar'
import { DirSource } from './dir.js'
import type { EntrySource } from '@nydusjs/tar'

export type SourceType = 'tar' | 'targz' | 'tarzst' | 'dir'
export const SOURCE_TYPES: readonly SourceType[] = ['tar', 'targz', 'tarzst', 'dir']
const READ_CHUNK = 1024 * 1024

/** Guesses the type by magic: gzip, zstd, a ustar header, or a directory. */
export async function detectType(path: string): Promise<SourceType> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `source ${path}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`)
  })
  if (st.isDirectory()) return 'dir'
  const fh = await open(path, 'r')
  try {
    const head = Buffer.alloc(512)
    const { bytesRead } = await fh.read(head, 0, 512, 0)
    return sniff(head.subarray(0, bytesRead), path)
  } finally {
    await fh.close()
  }
}

export function sniff(head: Buffer, where: string): SourceType {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'targz'
  if (head.readUInt32LE(0) === 0xfd2fb528) return 'tarzst'
  if (head.length >= 263 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar'
  if (head.length === 0) return 'tar'
  throw new ConverterError(
    'ERR_SOURCE_UNKNOWN_TYPE',
    `${where}: not a tar, gzip or zstd stream and not a directory (use --type to say which)`
  )
}

/** A decompressing stream over raw bytes, with errors turned into one clear message. */
export function decompressed(raw: AsyncIterable<Uint8Array> & Readable, type: SourceType, where: string): AsyncIterable<Uint8Array> {
  if (type === 'tar') return raw
  const d: Readable = type === 'targz' ? createGunzip({ chunkSize: READ_CHUNK }) : new DecompressStream()
  // pipeline, not pipe: an error on either side reaches the reader, never an unhandled 'error' event.
  pipeline(raw, d as unknown as NodeJS.ReadWriteStream, () => {})
  return wrapErrors(d, `${where}: corrupt ${type === 'targz' ? 'gzip' : 'zstd'} stream`)
}

async function* wrapErrors(s: AsyncIterable<Uint8Array> & Readable, prefix: string): AsyncGenerator<Uint8Array> {
  try {
    for await (const b of s) yield b
  } catch (err) {
    if (err instanceof ConverterError) throw err
    throw new ConverterError('ERR_SOURCE_DECOMPRESS', `${prefix} (${(err as Error).message})`)
  } finally {
    s.destroy()
  }
}

/** A layer from a path, or from standard input when the path is `-` (then `type` defaults to tar). */
export async function openSource(path: string, type?: SourceType): Promise<EntrySource> {
  if (path === '-') {
    if (type === 'dir') throw new ConverterError('ERR_BAD_ARGUMENT', 'standard input cannot be a directory source')
    return new TarSource(decompressed(process.stdin, type ?? 'tar', 'standard input'), 'standard input')
  }
  const t = type ?? (await detectType(path))
  if (t === 'dir') return new DirSource(path)
  const st = await stat(path).catch(() => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `source ${path}: no such file`)
  })
  // A plain tar in a regular file is read with positional reads straight into the chunk buffers.
  if (t === 'tar' && st.isFile()) return new TarSource(await open(path, 'r'), path, st.size)
  const raw = createReadStream(path, { highWaterMark: READ_CHUNK })
  return new TarSource(decompressed(raw, t, path), path)
}
