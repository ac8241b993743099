import { parentPort, workerData } from 'node:worker_threads'
import { decompressChunkInto, loadDigester, type DigesterName } from '@nydusjs/rafs/read'
import { exposeGc } from './memory-release.js'

/** Body of `VerifyWorker`'s thread: decodes and hashes chunks in shared buffers, in place. */
export type VerifyRequest =
  | { id: number; op: 'digest'; buf: SharedArrayBuffer; off: number; len: number }
  | {
      id: number
      op: 'decode'
      src: SharedArrayBuffer
      srcOff: number
      srcLen: number
      dst: SharedArrayBuffer
      dstOff: number
      flags: number
      size: number
    }
export type VerifyReply = { id: number; digest: ArrayBuffer; len: number } | { id: number; error: string }

const digester = await loadDigester((workerData as { digester: DigesterName }).digester)

function answer(m: VerifyRequest): VerifyReply {
  try {
    const data =
      m.op === 'digest'
        ? new Uint8Array(m.buf, m.off, m.len)
        : decompressChunkInto(new Uint8Array(m.src, m.srcOff, m.srcLen), m.flags, m.size, Buffer.from(m.dst, m.dstOff, m.size))
    const d = digester.digest(data)
    // Just the 32 bytes: a Buffer may be a view of an 8 KiB slab, which cloning would copy whole.
    return { id: m.id, digest: d.buffer.slice(d.byteOffset, d.byteOffset + d.length) as ArrayBuffer, len: data.length }
  } catch (err) {
    return { id: m.id, error: (err as Error).message }
  }
}

/**
 * Requests between two young-generation collections here. Each request's
 * SharedArrayBuffer handles keep the pool's slabs alive, those the pool has
 * since dropped too, until this isolate collects them, and it allocates too
 * little to do so on its own: some 100 MB of dropped slabs were held so while
 * a shared daemon read 30 images. A scavenge of this near-empty heap is cheap.
 */
const COLLECT_EVERY = 16
const collect = exposeGc()
let handled = 0

parentPort!.on('message', (m: VerifyRequest) => {
  parentPort!.postMessage(answer(m))
  if (++handled % COLLECT_EVERY === 0) collect({ type: 'minor' })
})
