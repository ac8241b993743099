import { createRequire } from 'node:module'
import { compress, decompress } from 'zstd-napi'
import type * as ZstdBinding from 'zstd-napi/binding.js'
import { CHUNK_FLAG_COMPRESSED, type CompressorName } from './constants.js'
import { RafsError } from './errors.js'

export interface EncodedChunk {
  data: Buffer
  flags: number
}

/** zstd level 3 as in nydus; a chunk that does not shrink is stored raw. */
export function compressChunk(data: Uint8Array, compressor: CompressorName, level = 3): EncodedChunk {
  if (compressor === 'zstd' && data.length > 0) {
    const out = compress(data, { compressionLevel: level })
    if (out.length < data.length) return { data: out, flags: CHUNK_FLAG_COMPRESSED }
  }
  return { data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), flags: 0 }
}

export function decompressChunk(data: Uint8Array, flags: number, expectedSize: number): Buffer {
  if ((flags & CHUNK_FLAG_COMPRESSED) !== 0) return checkedZstd(data, expectedSize, () => decompress(data))
  const out = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (out.length !== expectedSize)
    throw new RafsError('ERR_RAFS_BAD_CHUNK', `chunk decodes to ${out.length} bytes, expected ${expectedSize}`)
  return out
}

// zstd-napi's documented low-level binding: decompresses into a buffer the caller owns.
const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof ZstdBinding
// One context per thread, reused: a fresh one per call (ZSTD_decompress) cost ~35 us, more than a small chunk's decoding.
let dctx: InstanceType<typeof ZstdBinding.DCtx> | undefined

/**
 * As decompressChunk, but a compressed chunk is decoded into `dst` (at least
 * `expectedSize` bytes), so a reader can reuse its buffers; the result is a
 * view of `dst`, or of `data` when the chunk is stored raw.
 */
export function decompressChunkInto(data: Uint8Array, flags: number, expectedSize: number, dst: Buffer): Buffer {
  if ((flags & CHUNK_FLAG_COMPRESSED) === 0) return decompressChunk(data, flags, expectedSize)
  if (dst.length < expectedSize) throw new RangeError(`decompressChunkInto: ${dst.length}-byte buffer for a ${expectedSize}-byte chunk`)
  dctx ??= new zstdBinding.DCtx()
  const ctx = dctx
  return checkedZstd(data, expectedSize, () => dst.subarray(0, ctx.decompress(dst.subarray(0, expectedSize), data)))
}

/** Runs `decode` on a zstd frame whose header claims exactly `expectedSize` (the bytes are untrusted; zstd-napi allocates what the header claims). */
function checkedZstd(data: Uint8Array, expectedSize: number, decode: () => Buffer): Buffer {
  const claimed = zstdFrameContentSize(data)
  if (claimed !== expectedSize)
    throw new RafsError('ERR_RAFS_BAD_CHUNK', `zstd frame claims ${claimed ?? 'no'} content size, expected ${expectedSize}`)
  let out: Buffer
  try {
    out = decode()
  } catch (err) {
    throw new RafsError('ERR_RAFS_BAD_CHUNK', `chunk does not decompress: ${(err as Error).message}`)
  }
  if (out.length !== expectedSize)
    throw new RafsError('ERR_RAFS_BAD_CHUNK', `chunk decodes to ${out.length} bytes, expected ${expectedSize}`)
  return out
}

/** The content size a zstd frame header declares, or undefined when absent or not a frame. */
export function zstdFrameContentSize(b: Uint8Array): number | undefined {
  if (b.length < 6 || b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) return undefined
  const fhd = b[4]
  const fcsFlag = fhd >> 6
  const single = (fhd >> 5) & 1
  const dictBytes = [0, 1, 2, 4][fhd & 3]
  const fcsBytes = [single, 2, 4, 8][fcsFlag]
  if (fcsBytes === 0) return undefined
  const at = 5 + (single === 1 ? 0 : 1) + dictBytes
  if (at + fcsBytes > b.length) return undefined
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  switch (fcsBytes) {
    case 1:
      return v[at]
    case 2:
      return v.readUInt16LE(at) + 256
    case 4:
      return v.readUInt32LE(at)
    default:
      return v.readUInt32LE(at) + v.readUInt32LE(at + 4) * 0x100000000
  }
}
