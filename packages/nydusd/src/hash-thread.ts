import { parentPort, workerData } from 'node:worker_threads'
import { loadDigester, type DigesterName } from '@nydusjs/rafs'

/** Body of `HashWorker`'s thread: hashes ranges of shared chunk buffers. */
const digester = await loadDigester((workerData as { digester: DigesterName }).digester)
parentPort!.on('message', (m: { id: number, buf: SharedArrayBuffer, off: number, len: number }) => {
  const d = digester.digest(new Uint8Array(m.buf, m.off, m.len))
  // Just the 32 bytes: a Buffer may be a view of an 8 KiB slab, which cloning would copy whole.
  parentPort!.postMessage({ id: m.id, digest: d.buffer.slice(d.byteOffset, d.byteOffset + d.length) })
})
