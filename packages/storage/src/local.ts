// What a daemon reading local blobs needs, without the network backends (their
// HTTP client costs start-up time): import '@nydusjs/storage/local'.
export * from './errors.js'
export { checkBlobId, type BlobBackend } from './backend.js'
export { LocalFsBackend } from './localfs.js'
export { ChunkCache, type ChunkCacheOptions } from './chunk-cache.js'
export { ChainBackend, type ChainLink, type ChainEvents, type ServedRange, type Verify } from './chain.js'
export { AbandonedBufferError, Breaker, LINK_DEFAULTS, ResilientBackend, type LinkOptions } from './resilient.js'
