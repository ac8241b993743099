import { decompressChunk, decompressChunkInto } from './compress.js'
import type { Digester } from './digest.js'
import { RafsError } from './errors.js'
import type { ChunkRef } from './tree.js'

/**
 * The one chunk decoder: a chunk's stored bytes decompressed (into `dst` when
 * given) and checked against the digest the bootstrap names. Every reader
 * (nydusd, check, unpack) serves bytes only from here or from its
 * thread-side twin, which hashes the same way.
 */
export function decodeChunk(raw: Uint8Array, c: ChunkRef, digester: Digester, dst?: Buffer): Buffer {
  const data =
    dst === undefined ? decompressChunk(raw, c.flags, c.uncompressedSize) : decompressChunkInto(raw, c.flags, c.uncompressedSize, dst)
  checkChunkDigest(digester.digest(data), c)
  return data
}

/** Throws ERR_RAFS_CHUNK_DIGEST unless `digest` is the chunk's. */
export function checkChunkDigest(digest: Uint8Array, c: ChunkRef): void {
  if (!c.digest.equals(digest))
    throw new RafsError(
      'ERR_RAFS_CHUNK_DIGEST',
      `chunk at ${c.compressedOffset}: content does not match digest ${c.digest.toString('hex')}`
    )
}
