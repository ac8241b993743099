import { parentPort, workerData } from 'node:worker_threads'
import { Compressor } from 'zstd-napi'
import { CHUNK_FLAG_COMPRESSED, loadDigester, type CompressorName, type DigesterName } from '@nydusjs/rafs'

/** Hashes and compresses batches of chunks off the main thread. */
export interface BatchRequest {
  seq: number
  data: ArrayBuffer
  lens: Uint32Array
}
/** `data` is the request's buffer, handed back so the main thread can reuse it. */
export interface BatchResult {
  seq: number
  digests: ArrayBuffer
  out: ArrayBuffer
  outLens: Uint32Array
  flags: Uint8Array
  data: ArrayBuffer
}

const { compressor, digester, level } = workerData as { compressor: CompressorName; digester: DigesterName; level: number }
const d = await loadDigester(digester)
const zstd = new Compressor()
zstd.setParameters({ compressionLevel: level })

parentPort!.on('message', (req: BatchRequest) => {
  const n = req.lens.length
  const digests = Buffer.allocUnsafeSlow(n * 32)
  const parts: Buffer[] = []
  const outLens = new Uint32Array(n)
  const flags = new Uint8Array(n)
  let off = 0
  let total = 0
  for (let i = 0; i < n; i++) {
    const chunk = Buffer.from(req.data, off, req.lens[i])
    off += req.lens[i]
    d.digest(chunk).copy(digests, i * 32)
    let stored: Buffer = chunk
    if (compressor === 'zstd') {
      const c = zstd.compress(chunk)
      if (c.length < chunk.length) {
        stored = c
        flags[i] = CHUNK_FLAG_COMPRESSED
      }
    }
    parts.push(stored)
    outLens[i] = stored.length
    total += stored.length
  }
  // allocUnsafeSlow: a pooled buffer must never be transferred.
  const out = Buffer.allocUnsafeSlow(total)
  let o = 0
  for (const p of parts) o += p.copy(out, o)
  const res: BatchResult = {
    seq: req.seq,
    digests: digests.buffer as ArrayBuffer,
    out: out.buffer as ArrayBuffer,
    outLens,
    flags,
    data: req.data
  }
  parentPort!.postMessage(res, [res.digests, res.out, res.data])
})
parentPort!.postMessage('ready')
