import { withContext } from '@nydusjs/errors'
import type { BlobInfo } from '@nydusjs/rafs'
import type { ChainBackend } from '@nydusjs/storage/local'
import { NydusdError } from './errors.js'

/**
 * Every blob the bootstrap names is in the backend at the size it records:
 * a missing or truncated blob fails the start with its name, instead of the
 * first reader of one of its files getting EIO later. One size request per
 * blob, all at once.
 */
export async function checkBlobs(blobs: readonly BlobInfo[], backend: ChainBackend): Promise<void> {
  await Promise.all(
    blobs.map(async b => {
      const size = await backend.size(b.id).catch((err: unknown) => {
        throw withContext(err, `blob sha256:${b.id}`)
      })
      if (size !== b.compressedSize)
        throw new NydusdError(
          'ERR_BLOB_CORRUPT',
          `blob sha256:${b.id} is ${size} bytes in the backend; the bootstrap records ${b.compressedSize}`
        )
    })
  )
}
