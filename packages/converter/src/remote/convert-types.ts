import type { CompressorName, DigesterName } from '@nydusjs/rafs'
import type { ImageRef, PushResult, RegistryClient } from '@nydusjs/registry'
import type { ChunkWorkers } from '../builder/chunk-workers.js'
import type { BuildCache, BuildCacheReport } from './build-cache.js'
import type { BlobTarget } from './registries.js'
import type { LoadedDicts } from './source.js'

/** The options, reports and per-run context of a registry-to-registry conversion (shared by its steps). */
export interface RemoteConvertOptions {
  source: string
  target: string
  platforms?: string[]
  allPlatforms?: boolean
  chunkDict?: string[]
  prefetchPatterns?: string
  mergePlatform?: boolean
  backendType?: 'registry' | 's3'
  backendConfig?: string
  sourceInsecure?: boolean
  targetInsecure?: boolean
  /** nydusify's `--build-cache`: an image of converted layers, read before and written after the conversion. */
  buildCache?: string
  buildCacheMaxRecords?: number
  buildCacheInsecure?: boolean
  workDir?: string
  chunkSize?: number
  compressor?: CompressorName
  digester?: DigesterName
  workers?: number
  /**
   * Push each data blob while it is built. Default: on, unless the target tag
   * exists already (a re-conversion, whose blobs are most likely there: they
   * are checked with a HEAD before any byte is sent).
   */
  streamPush?: boolean
  onProgress?: (p: { image: number; layer: number; layers: number; phase: 'pull' | 'push'; bytes: number }) => void
}

export interface LayerReport {
  source_digest: string
  source_size: number
  blob_id?: string
  blob_size: number
  push: PushResult | 'none'
  /** Whether the blob went up while it was built; `stream_fallback` says why it was pushed afterwards instead. */
  streamed: boolean
  stream_fallback?: string
  /** With `--build-cache`: whether the layer came from it (not pulled, not converted). */
  build_cache?: 'hit' | 'miss'
  files: number
  bytes_in: number
  chunks: number
  dedup_hits: number
  dict_hits: number
  seconds: number
}

export interface ImageReport {
  platform: string
  source_digest: string
  target_digest: string
  bootstrap_digest: string
  root_digest: string
  blobs: string[]
  layers: LayerReport[]
  pushed_bytes: number
  dict_saved_bytes: number
  prefetch_files: number
  prefetch_unmatched: string[]
}

export interface RemoteConvertReport {
  source: { ref: string; digest: string }
  target: { ref: string; digest: string; media_type: string }
  backend: 'registry' | 's3'
  images: ImageReport[]
  pushed_bytes: number
  dict_saved_bytes: number
  build_cache?: BuildCacheReport
  seconds: number
}

export interface Ctx {
  o: RemoteConvertOptions
  src: ImageRef
  dst: ImageRef
  sc: RegistryClient
  tc: RegistryClient
  target: BlobTarget
  dicts: LoadedDicts
  patterns: string[]
  work: string
  digester: DigesterName
  streamPush: boolean
  pool: ChunkWorkers
  cache?: BuildCache
  /** What, besides the source layers, a layer's output depends on: part of its build cache key. */
  cacheOptions: string
}
