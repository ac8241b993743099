import { mkdir } from 'node:fs/promises'
import { DEFAULT_CHUNK_SIZE, type BlobInfo, type CompressorName, type DigesterName, type RafsTree } from '@nydusjs/rafs'
import type { EntrySource } from '@nydusjs/tar'
import { BlobWriter } from './blob-writer.js'
import { ChunkDict } from './chunk-dict.js'
import { ChunkPipeline } from './chunk-pipeline.js'
import { ChunkWorkers } from './chunk-workers.js'
import { TreeBuilder } from './tree-builder.js'

export interface BuildOptions {
  blobDir: string
  chunkSize?: number
  compressor?: CompressorName
  digester?: DigesterName
  dict?: ChunkDict
  prefetch?: Buffer[]
  workers?: number
  onProgress?: (bytesIn: number) => void
  /** Sees the new blob's bytes, in order, as they are written. */
  blobTap?: (bufs: Buffer[]) => void
  /** false: the blob is pushed and deleted, so it is not fsynced. */
  durable?: boolean
  /** Hashing and compression threads shared by an image's layers (see `layerWorkers`). */
  pool?: ChunkWorkers
}

export interface BuildStats {
  files: number
  entries: number
  bytesIn: number
  chunks: number
  uniqueChunks: number
  dedupHits: number
  dictHits: number
  dictBytes: number
  blobSize: number
}

/** A built layer whose blob still sits at a temporary name (see `Staged`). */
export interface LayerBuild {
  tree: RafsTree
  /** The new blob, when the layer stored any chunk of its own. */
  blob?: { id: string; tmpPath: string; finalPath: string }
  stats: BuildStats
}

const LEVEL = 3

/** Threads for every layer of one image, built with the same options; the caller closes them. */
export function layerWorkers(opts: Pick<BuildOptions, 'compressor' | 'digester' | 'workers'>): ChunkWorkers {
  return new ChunkWorkers({ compressor: opts.compressor ?? 'zstd', digester: opts.digester ?? 'sha256', level: LEVEL }, opts.workers)
}

/** One layer's entries to a tree plus a blob of its new chunks. */
export async function buildLayer(source: EntrySource, opts: BuildOptions): Promise<LayerBuild> {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE
  const compressor = opts.compressor ?? 'zstd'
  const digester = opts.digester ?? 'sha256'
  await mkdir(opts.blobDir, { recursive: true })
  const writer = new BlobWriter(opts.blobDir, compressor, digester, opts.blobTap, opts.durable)
  const dict = (opts.dict ?? new ChunkDict(digester)).view()
  const pipe = new ChunkPipeline({
    compressor,
    digester,
    chunkSize,
    blob: writer,
    dict,
    workers: opts.workers,
    level: LEVEL,
    pool: opts.pool
  })
  const builder = new TreeBuilder(source.where)
  let files = 0
  let entries = 0
  let chunks = 0
  try {
    for await (const e of source.entries()) {
      entries++
      const inode = builder.add(e)
      if (inode === undefined) continue
      files++
      const n = Math.ceil(e.size / chunkSize)
      inode.chunks = new Array(n)
      chunks += n
      for (let i = 0; i < n; i++) {
        const len = Math.min(chunkSize, e.size - i * chunkSize)
        await pipe.add(
          len,
          async (dst, off) => await e.readInto(dst, off, len),
          ref => {
            inode.chunks[i] = ref
          }
        )
      }
      opts.onProgress?.(pipe.bytesIn)
    }
    await pipe.finish()
    const blobs: BlobInfo[] = [...dict.blobs]
    let blob: LayerBuild['blob']
    if (writer.toc.length > 0) {
      const c = await writer.commit()
      blobs.unshift({
        id: c.id,
        compressedSize: c.size,
        uncompressedSize: writer.uncompressedSize,
        chunkCount: writer.toc.length,
        compressor,
        digester
      })
      blob = { id: c.id, tmpPath: writer.tmpPath, finalPath: c.path }
    } else {
      for (const ref of pipe.refs) ref.blobIndex--
      await writer.abort()
    }
    const tree: RafsTree = { root: builder.root, blobs, chunkSize, compressor, digester, layer: true, prefetch: opts.prefetch ?? [] }
    return {
      tree,
      blob,
      stats: {
        files,
        entries,
        bytesIn: pipe.bytesIn,
        chunks,
        uniqueChunks: writer.toc.length,
        dedupHits: pipe.dedupHits,
        dictHits: pipe.dictHits,
        dictBytes: pipe.dictBytes,
        blobSize: blob === undefined ? 0 : writer.size
      }
    }
  } catch (err) {
    await pipe.close()
    await writer.abort()
    throw err
  }
}
