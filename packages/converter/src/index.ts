export * from './errors.js'
export {
  TarSource,
  encodeHeader,
  END_OF_ARCHIVE,
  padding,
  type TarHeader,
  type LayerEntry,
  type EntrySource,
  type EntryType
} from '@nydusjs/tar'
export { openSource, detectType, SOURCE_TYPES, type SourceType } from './sources/open.js'
export { DirSource } from './sources/dir.js'
export { buildLayer, layerWorkers, type BuildOptions, type BuildStats, type LayerBuild } from './builder/build-layer.js'
export { ChunkWorkers, type WorkerSpec } from './builder/chunk-workers.js'
export { ChunkDict } from './builder/chunk-dict.js'
export { normalisePath, TreeBuilder } from './builder/tree-builder.js'
export { createLayer, mergeBootstraps, convertOciLayout, loadBootstrap, type CreateOptions, type CreateResult } from './image.js'
export { checkImage, type CheckReport } from './check.js'
export { unpackToTar } from './unpack.js'
export { statBootstraps } from './report.js'
export { LocalBlobStore } from './blob-store.js'
