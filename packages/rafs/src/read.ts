// The read side of RAFS-TS (`@nydusjs/rafs/read`): what a daemon serving images loads. The
// writer, merge and the OCI layer codec (with its tar) stay out: 13 modules load instead of 20.
export * from './constants.js'
export * from './errors.js'
export * from './digest.js'
export * from './compress.js'
export { checkChunkDigest, decodeChunk } from './chunk-decode.js'
export type { BlobInfo, ChunkRef } from './tree.js'
export { BootstrapReader, type InodeRecord, type OpenOptions } from './reader.js'
export { bootstrapChecksum, decodeSuperblock, type Superblock, type TableRange } from './superblock.js'
export { TABLE_PAGE, type ReadAt } from './table-bytes.js'
export { checkStructure, openValidated, validateBootstrap } from './validate.js'
