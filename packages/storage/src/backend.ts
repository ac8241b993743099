/** A source of blob bytes. Every source (local dir, HTTP, registry, S3, P2P) implements this. */
export interface BlobBackend {
  /** Names the source in logs, errors and metrics ("localfs", "http"). */
  readonly name: string
  /** Exactly `length` bytes of the blob starting at `offset`, or a StorageError. */
  read: (blobId: string, offset: number, length: number, signal?: AbortSignal) => Promise<Buffer>
  /** Optional: fills all of `dst` from `offset`, so a reader can reuse its buffers. Never touches `dst` after it settles. */
  readInto?: (blobId: string, offset: number, dst: Buffer, signal?: AbortSignal) => Promise<void>
  /** The blob's size in bytes. */
  size: (blobId: string, signal?: AbortSignal) => Promise<number>
  close: () => Promise<void>
}

const BLOB_ID = /^[0-9a-f]{64}$/

/** Blob ids come from untrusted bootstraps: never let one name a path or URL outside the store. */
export function checkBlobId(id: string): string {
  if (!BLOB_ID.test(id)) throw new TypeError(`invalid blob id ${JSON.stringify(id)}`)
  return id
}
