import { createHash } from 'node:crypto'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { finished } from 'node:stream/promises'
import { ConverterError } from '../errors.js'
import type { EntrySource } from '@nydusjs/tar'
import { decompressed, type SourceType } from '../sources/open.js'
import { TarSource } from '@nydusjs/tar'

/** Hashes and counts the raw layer bytes as they pass; the stream fails at its end if they are not the descriptor's. */
class DigestCheck extends Transform {
  private readonly hash = createHash('sha256')
  private n = 0

  constructor(
    private readonly want: { digest: string; size: number },
    private readonly where: string
  ) {
    super({ highWaterMark: 1 << 20 })
  }

  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.n += chunk.length
    if (this.n > this.want.size) {
      cb(new ConverterError('ERR_OCI_DIGEST', `${this.where}: more than the ${this.want.size} bytes its descriptor says`))
      return
    }
    this.hash.update(chunk)
    cb(null, chunk)
  }

  _flush(cb: TransformCallback): void {
    const got = 'sha256:' + this.hash.digest('hex')
    if (this.n !== this.want.size)
      cb(new ConverterError('ERR_OCI_DIGEST', `${this.where}: ${this.n} bytes, its descriptor says ${this.want.size}`))
    else if (got !== this.want.digest) cb(new ConverterError('ERR_OCI_DIGEST', `${this.where}: content has digest ${got}`))
    else cb()
  }
}

/**
 * A layer streamed from a registry into the tar reader without being held in
 * memory. Its digest is checked as the bytes pass; when the reader stops at the
 * end-of-archive blocks the rest is drained, so a wrong layer always fails the build.
 */
export function streamedLayerSource(
  body: Readable,
  want: { digest: string; size: number },
  type: SourceType,
  where: string
): EntrySource & { verified: Promise<void> } {
  const check = new DigestCheck(want, where)
  body.on('error', err => check.destroy(new ConverterError('ERR_SOURCE_NOT_FOUND', `${where}: download failed (${err.message})`)))
  body.pipe(check)
  // Settles once every byte has passed the check; awaited after the build, whatever the tar reader consumed.
  const verified = finished(check)
  verified.catch(() => {})
  const src = new TarSource(drainAtEnd(decompressed(check, type, where)), where)
  return Object.assign(src, { verified })
}

async function* drainAtEnd(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const it = src[Symbol.asyncIterator]()
  let ended = false
  try {
    for (;;) {
      const r = await it.next()
      if (r.done === true) {
        ended = true
        return
      }
      yield r.value
    }
  } finally {
    while (!ended) ended = (await it.next()).done === true
  }
}
