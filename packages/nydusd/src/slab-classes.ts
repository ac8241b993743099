/** One slab cut into blocks of one size; `taken[i]` is 1 while block i is handed out. */
interface Slab {
  mem: Buffer
  size: number
  taken: Uint8Array
  /** Indexes of blocks handed back, reused first. */
  free: number[]
  /** Blocks below this index have been cut (cut as needed: touching a slab up front costs its page faults). */
  cut: number
  used: number
  generation: number
  /** Cut again after all its blocks came back (its blocks are reused memory). */
  recycled: boolean
}

/**
 * Power-of-two blocks cut from slabs of one size, a class per slab. A slab
 * none of whose blocks is in use goes back to a common stock and is cut for
 * whichever class asks next, so memory follows the mix of sizes being read
 * instead of being kept per class (the stock is bounded; beyond it the slab
 * idle longest is left to the collector). One Buffer per block would cost an
 * allocation and the collector's bookkeeping each, and a buffer per class
 * kept idle was mostly the wrong class: reading one image allocated 160 MiB
 * of fresh buffers that way.
 */
export class SlabClasses {
  /** Per class, the slabs that have blocks handed back. */
  private readonly withFree = new Map<number, Set<Slab>>()
  /** Per class, the slab being cut. */
  private readonly cutting = new Map<number, Slab>()
  /** Slabs with no block in use, oldest first. */
  private readonly stock: Slab[] = []
  private readonly slabs = new WeakMap<ArrayBufferLike, Slab>()
  private generation = 0
  /** Takes served by a block handed back before. */
  reused = 0

  constructor(
    readonly slabSize: number,
    private readonly allocate: (size: number) => Buffer,
    private readonly maxStock: number,
    /** Called with the bytes of every new slab. */
    private readonly allocated: (bytes: number) => void = () => {}
  ) {}

  /** A block of `size` bytes (a power of two up to the slab size): a handed-back one first, then one cut anew. */
  take(size: number): Buffer {
    const slab = this.withFree.get(size)?.values().next().value ?? this.cuttable(size)
    let i = slab.free.pop()
    if (i !== undefined || slab.recycled) this.reused++
    i ??= slab.cut++
    if (slab.free.length === 0) this.withFree.get(size)?.delete(slab)
    slab.taken[i] = 1
    slab.used++
    return slab.mem.subarray(i * size, (i + 1) * size)
  }

  /** False: not a block of ours. A block handed back twice is ignored. */
  give(b: Uint8Array): boolean {
    const slab = this.slabs.get(b.buffer)
    if (slab === undefined) return false
    const offset = b.byteOffset - slab.mem.byteOffset
    const i = Math.floor(offset / slab.size)
    if (offset % slab.size !== 0 || slab.taken[i] !== 1) return true
    slab.taken[i] = 0
    slab.used--
    // A slab from before a drain is left to the collector once its blocks are back.
    if (slab.generation !== this.generation) return true
    if (slab.used > 0) {
      slab.free.push(i)
      let set = this.withFree.get(slab.size)
      if (set === undefined) this.withFree.set(slab.size, (set = new Set()))
      set.add(slab)
      return true
    }
    this.withFree.get(slab.size)?.delete(slab)
    if (this.cutting.get(slab.size) === slab) this.cutting.delete(slab.size)
    this.stock.push(slab)
    if (this.stock.length * this.slabSize > this.maxStock) this.stock.shift()
    return true
  }

  /** The size of the block `b` is a view of; undefined if it is not one of ours. */
  blockSize(b: Uint8Array): number | undefined {
    return this.slabs.get(b.buffer)?.size
  }

  /** Forgets every slab: those with no block in use go to the collector, the rest once their blocks are back. */
  drain(): void {
    this.withFree.clear()
    this.cutting.clear()
    this.stock.length = 0
    this.generation++
  }

  /** The class's slab being cut, or a new one: from the stock (counted as reused) or new memory. */
  private cuttable(size: number): Slab {
    const current = this.cutting.get(size)
    if (current !== undefined && current.cut * size < this.slabSize) return current
    let slab = this.stock.pop()
    if (slab === undefined) {
      const mem = this.allocate(this.slabSize)
      this.allocated(this.slabSize)
      slab = { mem, size, taken: new Uint8Array(0), free: [], cut: 0, used: 0, generation: this.generation, recycled: false }
      this.slabs.set(mem.buffer, slab)
    } else slab.recycled = true
    slab.size = size
    slab.taken = new Uint8Array(this.slabSize / size)
    slab.free = []
    slab.cut = 0
    slab.used = 0
    this.cutting.set(size, slab)
    return slab
  }
}
