import { SlabClasses } from './slab-classes.js'

/**
 * Chunk buffers, handed back and reused. Reads otherwise allocate a fresh
 * buffer per chunk and per request, and V8 answers that external memory with
 * a major GC every few dozen MiB: a fifth of the CPU of a 1 GiB read went to
 * the collector before this pool. Buffers come in power-of-two classes from
 * 4 KiB up to the largest request, so a view never pins more than twice its
 * bytes (smaller ones come from Node's own slab). Classes are blocks cut from
 * slabs (SlabClasses): below 32 KiB from 256 KiB slabs, up to 1 MiB from
 * 1 MiB SharedArrayBuffers, so VerifyWorker's thread can decode and hash a
 * chunk where it lies (smaller chunks are decoded on this thread anyway).
 * Larger classes (big chunks, merged requests) are a SharedArrayBuffer each.
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBufferLike[]>()
  private readonly idle = new Set<ArrayBufferLike>()
  private readonly owned = new WeakSet<ArrayBufferLike>()
  private top: number
  private idleBytes = 0
  private readonly small: SlabClasses
  private readonly medium: SlabClasses
  /** Takes served from a handed-back buffer. */
  get reused(): number {
    return this.reusedLarge + this.small.reused + this.medium.reused
  }

  private reusedLarge = 0
  /** Bytes of slabs and buffers allocated so far. */
  allocatedBytes = 0

  /**
   * `maxSize`: the largest request to pool; at most `maxIdleBytes` of slabs with no block in use
   * wait in the pool (and as much again of the classes above 1 MiB, always 4 of the largest);
   * `onAllocate` is told the bytes of every slab or buffer allocated (not of those reused).
   */
  constructor(
    maxSize: number,
    private maxIdleBytes = 4 * 1024 * 1024,
    private readonly onAllocate: (bytes: number) => void = () => {}
  ) {
    this.top = classOf(Math.max(maxSize, MIN_CLASS))
    const counted = (bytes: number): void => this.allocated(bytes)
    this.small = new SlabClasses(SMALL_SLAB, n => Buffer.allocUnsafeSlow(n), SMALL_STOCK, counted)
    this.medium = new SlabClasses(MEDIUM_SLAB, n => Buffer.from(new SharedArrayBuffer(n)), maxIdleBytes, counted)
    this.maxIdleBytes = Math.max(maxIdleBytes, 4 * this.top)
  }

  /** Pools requests up to `maxSize` too (a mount with larger chunks or merged requests); never lower. */
  raiseTop(maxSize: number): void {
    this.top = Math.max(this.top, classOf(Math.max(maxSize, MIN_CLASS)))
    this.maxIdleBytes = Math.max(this.maxIdleBytes, 4 * this.top)
  }

  /** `len` bytes: a view of a pooled buffer, or a fresh buffer when `len` is outside the classes. */
  take(len: number): Buffer {
    if (len < MIN_CLASS / 2 || len > this.top) return Buffer.allocUnsafe(len)
    const size = classOf(len)
    if (size < SHARED_MIN) return this.small.take(size).subarray(0, len)
    if (size <= MEDIUM_SLAB) return this.medium.take(size).subarray(0, len)
    let ab = this.free.get(size)?.pop()
    if (ab !== undefined) {
      this.idle.delete(ab)
      this.idleBytes -= size
      this.reusedLarge++
    } else {
      ab = new SharedArrayBuffer(size)
      this.owned.add(ab)
      this.allocated(size)
    }
    return Buffer.from(ab, 0, len)
  }

  /** The bytes `b` keeps alive: its pooled block, or its whole ArrayBuffer if it is not from the pool. */
  pins(b: Uint8Array): number {
    return this.small.blockSize(b) ?? this.medium.blockSize(b) ?? b.buffer.byteLength
  }

  /** Forgets the idle buffers, large and small, so the collector can free them (an idle daemon holds none). */
  drain(): void {
    this.free.clear()
    this.idle.clear()
    this.idleBytes = 0
    this.small.drain()
    this.medium.drain()
  }

  /**
   * Hands back a buffer from `take` (or a view of one). Nothing may touch it afterwards. Over the
   * idle bound, the buffers idle longest go (whatever their class): refusing the new one instead
   * left the bound full of a class nobody took, and every other class allocated afresh.
   */
  give(b: Uint8Array): void {
    const ab = b.buffer
    if (this.small.give(b) || this.medium.give(b)) return
    if (!this.owned.has(ab) || this.idle.has(ab) || ab.byteLength > this.maxIdleBytes) return
    while (this.idleBytes + ab.byteLength > this.maxIdleBytes) this.dropOldest()
    let list = this.free.get(ab.byteLength)
    if (list === undefined) this.free.set(ab.byteLength, (list = []))
    list.push(ab)
    this.idle.add(ab)
    this.idleBytes += ab.byteLength
  }

  private allocated(bytes: number): void {
    this.allocatedBytes += bytes
    this.onAllocate(bytes)
  }

  private dropOldest(): void {
    const old = this.idle.values().next().value!
    this.idle.delete(old)
    this.idleBytes -= old.byteLength
    const list = this.free.get(old.byteLength)!
    list.splice(list.indexOf(old), 1)
  }
}

/** Whether `a` starts where `b` does, in the same memory: a raw-stored chunk is a view of its request buffer (blocks share slabs, so the ArrayBuffer alone does not tell). */
export const startsAt = (a: Uint8Array, b: Uint8Array): boolean => a.buffer === b.buffer && a.byteOffset === b.byteOffset

const MIN_CLASS = 4 * 1024
const SHARED_MIN = 32 * 1024

/** The smallest power of two that holds `len`. */
const classOf = (len: number): number => 2 ** Math.ceil(Math.log2(len))

const SMALL_SLAB = 256 * 1024
const SMALL_STOCK = 1024 * 1024
const MEDIUM_SLAB = 1024 * 1024
