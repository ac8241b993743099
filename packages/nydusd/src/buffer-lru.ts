/** A byte-bounded LRU of buffers; one serves every mount of a process, each through its own `view`. */
export class BufferLru {
  private readonly map = new Map<string, Buffer>()
  private bytes = 0
  /** `onEvict` gets every buffer the LRU drops (not those handed out by `take`). */
  constructor(
    private limit: number,
    private readonly onEvict?: (v: Buffer) => void
  ) {}

  /** A larger bound (a mount whose config asks for more); never smaller. */
  raiseLimit(limit: number): void {
    this.limit = Math.max(this.limit, limit)
  }

  get size(): number {
    return this.bytes
  }

  get(k: string): Buffer | undefined {
    const v = this.map.get(k)
    if (v !== undefined) {
      this.map.delete(k)
      this.map.set(k, v)
    }
    return v
  }

  take(k: string): Buffer | undefined {
    const v = this.map.get(k)
    if (v !== undefined) {
      this.map.delete(k)
      this.bytes -= v.length
    }
    return v
  }

  set(k: string, v: Buffer): void {
    if (v.length > this.limit) return
    const old = this.map.get(k)
    if (old !== undefined) {
      this.bytes -= old.length
      this.map.delete(k)
      if (old !== v) this.onEvict?.(old)
    }
    this.map.set(k, v)
    this.bytes += v.length
    for (const [key, val] of this.map) {
      if (this.bytes <= this.limit) break
      this.map.delete(key)
      this.bytes -= val.length
      this.onEvict?.(val)
    }
  }

  /** Drops the buffers whose key starts with `prefix` (all of them by default), each to `onEvict`. */
  clear(prefix = ''): void {
    const dropped: Buffer[] = []
    for (const [k, v] of this.map) {
      if (!k.startsWith(prefix)) continue
      this.map.delete(k)
      this.bytes -= v.length
      dropped.push(v)
    }
    for (const v of dropped) this.onEvict?.(v)
  }

  /** The entries of one owner: its keys carry `prefix`. */
  view(prefix: string): LruView {
    return new LruView(this, prefix)
  }
}

/** One mount's part of a shared BufferLru: the same calls, its keys prefixed. */
export class LruView {
  constructor(
    private readonly lru: BufferLru,
    private readonly prefix: string
  ) {}

  get(k: string): Buffer | undefined {
    return this.lru.get(this.prefix + k)
  }

  take(k: string): Buffer | undefined {
    return this.lru.take(this.prefix + k)
  }

  set(k: string, v: Buffer): void {
    this.lru.set(this.prefix + k, v)
  }

  clear(): void {
    this.lru.clear(this.prefix)
  }
}
