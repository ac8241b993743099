import type { ServerResponse } from 'node:http'

/**
 * Piece-sized buffers, handed back after use. A fresh multi-MiB Buffer per
 * piece faults in every page again and grows the external memory that
 * triggers major GCs: on this machine that was most of a node's CPU.
 */
export class PieceBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>()

  /** Keeps at most `keep` idle buffers of each size class. */
  constructor(private readonly keep = 8) {}

  /** A buffer of `size` bytes (contents undefined); give it back with `give`. */
  take(size: number): Buffer {
    const cap = sizeClass(size)
    const ab = this.free.get(cap)?.pop() ?? new ArrayBuffer(cap)
    return Buffer.from(ab, 0, size)
  }

  give(buf: Buffer): void {
    const ab = buf.buffer
    if (!(ab instanceof ArrayBuffer) || buf.byteOffset !== 0 || ab.byteLength !== sizeClass(ab.byteLength)) return
    const list = this.free.get(ab.byteLength) ?? []
    if (list.length < this.keep) list.push(ab)
    this.free.set(ab.byteLength, list)
  }
}

/** Powers of two from 64 KiB: piece sizes differ per task, a class holds any of them up to its size. */
function sizeClass(size: number): number {
  let cap = 64 << 10
  while (cap < size) cap *= 2
  return cap
}

/** Resolves when `res` can take more, or is gone; leaves no listener behind. */
export async function drained(res: ServerResponse): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

/** Writes `data` and resolves once the socket holds it (or the response is gone): only then may `data` be reused. */
export async function writeFlushed(res: ServerResponse, data: Buffer): Promise<void> {
  if (res.destroyed) return
  let full = false
  const flushed = new Promise<void>(resolve => {
    const done = (): void => {
      res.off('close', done)
      resolve()
    }
    res.on('close', done)
    full = !res.write(data, done)
  })
  if (full) await drained(res)
  await flushed
}

/** Ends `res` and resolves once the socket holds everything (or the response is gone). */
export async function endFlushed(res: ServerResponse): Promise<void> {
  await new Promise<void>(resolve => {
    res.once('close', resolve)
    res.end(resolve)
  })
}
