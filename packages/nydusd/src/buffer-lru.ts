/** A byte-bounded LRU of buffers. */
export class BufferLru {
  private readonly map = new Map<string, Buffer>()
  private bytes = 0
  /** `onEvict` gets every buffer the LRU drops (not those handed out by `take`). */
  constructor(
    private readonly limit: number,
    private readonly onEvict?: (v: Buffer) => void
  ) {}
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

  /** Drops every buffer (each to `onEvict`). */
  clear(): void {
    const all = [...this.map.values()]
    this.map.clear()
    this.bytes = 0
    for (const v of all) this.onEvict?.(v)
  }
}
