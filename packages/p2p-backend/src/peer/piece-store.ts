import { mkdir, open, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'

/** One task's pieces on this node: a sparse file of the task's length and which pieces it holds. */
export class StoredTask {
  readonly have: Uint8Array
  haveCount = 0
  bytes = 0
  lastUsed = Date.now()
  /** Downloads or uploads using it: never evicted meanwhile. */
  users = 0
  private readonly waiting = new Map<number, Array<() => void>>()

  constructor(
    readonly id: string,
    readonly length: number,
    readonly pieceSize: number,
    private readonly fh: FileHandle,
    readonly file: string
  ) {
    this.have = new Uint8Array(Math.max(1, Math.ceil(length / pieceSize)))
  }

  get count(): number {
    return this.have.length
  }

  has(n: number): boolean {
    return this.have[n] === 1
  }

  get complete(): boolean {
    return this.haveCount === this.count
  }

  bounds(n: number): { start: number; end: number } {
    const start = n * this.pieceSize
    return { start, end: Math.min(this.length, start + this.pieceSize) - 1 }
  }

  /** Stores a verified piece (its bytes as they came, in one writev), then wakes whoever waits for it. */
  async write(n: number, chunks: Buffer[]): Promise<void> {
    if (this.has(n)) return
    const size = chunks.reduce((sum, c) => sum + c.length, 0)
    const { bytesWritten } = await this.fh.writev(chunks, n * this.pieceSize)
    if (bytesWritten !== size) throw new Error(`piece store: ${this.id} piece ${n}: ${bytesWritten} of ${size} bytes written`)
    this.have[n] = 1
    this.haveCount++
    this.bytes += size
    this.lastUsed = Date.now()
    for (const w of this.waiting.get(n) ?? []) w()
    this.waiting.delete(n)
  }

  /** Resolves once piece `n` is here. */
  async until(n: number): Promise<void> {
    if (this.has(n)) return
    await new Promise<void>(resolve => {
      const list = this.waiting.get(n) ?? []
      list.push(resolve)
      this.waiting.set(n, list)
    })
  }

  /** Bytes [start, end] (inclusive) of pieces this task holds, into `buf` (of that length) when given. */
  async read(start: number, end: number, buf: Buffer = Buffer.allocUnsafe(end - start + 1)): Promise<Buffer> {
    this.lastUsed = Date.now()
    let got = 0
    while (got < buf.length) {
      const { bytesRead } = await this.fh.read(buf, got, buf.length - got, start + got)
      if (bytesRead === 0) throw new Error(`piece store: ${this.id} ends at byte ${start + got}`)
      got += bytesRead
    }
    return buf
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {})
  }
}

/**
 * The node's pieces, bounded on disk: when they take more than `maxBytes`,
 * the least recently used tasks nobody is using go first. Started empty:
 * what a previous run held is not trusted across restarts.
 */
export class PieceStore {
  private readonly tasks = new Map<string, StoredTask>()
  private readonly opening = new Map<string, Promise<StoredTask>>()

  constructor(
    readonly dir: string,
    readonly maxBytes: number
  ) {}

  async init(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
    await mkdir(this.dir, { recursive: true })
  }

  get(id: string): StoredTask | undefined {
    return this.tasks.get(id)
  }

  async obtain(id: string, length: number, pieceSize: number): Promise<StoredTask> {
    const t = this.tasks.get(id)
    if (t !== undefined && t.length === length && t.pieceSize === pieceSize) return t
    if (t !== undefined) await this.remove(t)
    let p = this.opening.get(id)
    if (p === undefined) {
      p = (async () => {
        const file = join(this.dir, `${id}.data`)
        const fh = await open(file, 'w+')
        if (length > 0) await fh.truncate(length)
        const s = new StoredTask(id, length, pieceSize, fh, file)
        this.tasks.set(id, s)
        return s
      })().finally(() => this.opening.delete(id))
      this.opening.set(id, p)
    }
    return await p
  }

  get bytes(): number {
    let n = 0
    for (const t of this.tasks.values()) n += t.bytes
    return n
  }

  /** Evicts least recently used idle tasks until the store fits; returns the ids evicted. */
  async shrink(): Promise<string[]> {
    const out: string[] = []
    const idle = [...this.tasks.values()].filter(t => t.users === 0).sort((a, b) => a.lastUsed - b.lastUsed)
    for (const t of idle) {
      if (this.bytes <= this.maxBytes) break
      await this.remove(t)
      out.push(t.id)
    }
    return out
  }

  async remove(t: StoredTask): Promise<void> {
    this.tasks.delete(t.id)
    await t.close()
    await rm(t.file, { force: true })
  }

  async close(): Promise<void> {
    for (const t of this.tasks.values()) await t.close()
    this.tasks.clear()
  }
}
