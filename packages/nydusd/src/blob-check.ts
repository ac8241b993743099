import { statusOf, withContext } from '@nydusjs/errors'
import type { BlobInfo } from '@nydusjs/rafs/read'
import type { ChainBackend } from '@nydusjs/storage/local'
import type { Logger } from 'pino'
import { NydusdError } from './errors.js'

/**
 * Every blob the bootstrap names is in the backend at the size it records:
 * a missing or truncated blob fails the start with its name, instead of the
 * first reader of one of its files getting EIO later. One size request per
 * blob, all at once. Only a definite answer fails the start: a backend that
 * cannot be reached is logged, so a restart with a warm cache still serves.
 */
export async function checkBlobs(blobs: readonly BlobInfo[], backend: ChainBackend, log: Logger): Promise<void> {
  await Promise.all(
    blobs.map(async b => {
      let size: number
      try {
        size = await backend.size(b.id)
      } catch (err) {
        if (statusOf(err).kind === 'not-found') throw withContext(err, `blob sha256:${b.id}`)
        log.warn({ blob: b.id, err: (err as Error).message }, 'blob check: the backend did not answer; starting anyway')
        return
      }
      if (size !== b.compressedSize)
        throw new NydusdError(
          'ERR_BLOB_CORRUPT',
          `blob sha256:${b.id} is ${size} bytes in the backend; the bootstrap records ${b.compressedSize}`
        )
    })
  )
}
