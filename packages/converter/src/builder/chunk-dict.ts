import { withContext } from '@nydusjs/errors'
import { readFile } from 'node:fs/promises'
import { BootstrapReader, RafsError, type BlobInfo, type ChunkRef, type DigesterName, type RafsTree, walkTree, isReg } from '@nydusjs/rafs'
import { ConverterError } from '../errors.js'

interface Known {
  ref: ChunkRef
  blob: BlobInfo
}

/**
 * Chunks that already exist in earlier blobs (`--chunk-dict`, a parent
 * bootstrap, or lower layers of the same image). A hit is referenced, not stored.
 */
export class ChunkDict {
  private readonly known = new Map<string, Known>()

  constructor(readonly digester: DigesterName) {}

  get size(): number {
    return this.known.size
  }

  static async load(paths: readonly string[], digester: DigesterName): Promise<ChunkDict> {
    const dict = new ChunkDict(digester)
    for (const p of paths) {
      const buf = await readFile(p).catch((err: Error) => {
        throw new ConverterError('ERR_SOURCE_NOT_FOUND', `chunk dict ${p}: ${err.message}`)
      })
      let r: BootstrapReader
      try {
        r = BootstrapReader.open(buf)
      } catch (err) {
        if (err instanceof RafsError) throw withContext(err, `chunk dict ${p}`)
        throw err
      }
      dict.addReader(r, p)
    }
    return dict
  }

  addReader(r: BootstrapReader, where: string): void {
    this.checkDigester(r.sb.digester, where)
    const blobs = r.blobs()
    for (let i = 0; i < r.sb.chunkCount; i++) {
      const c = r.chunk(i)
      this.remember({ ...c, digest: Buffer.from(c.digest) }, blobs[c.blobIndex])
    }
  }

  addTree(t: RafsTree, where: string): void {
    this.checkDigester(t.digester, where)
    for (const { dentry } of walkTree(t.root)) {
      if (!isReg(dentry.inode.mode)) continue
      for (const c of dentry.inode.chunks) this.remember(c, t.blobs[c.blobIndex])
    }
  }

  /** A lookup for one build, with its own blob table. */
  view(): DictView {
    return new DictView(this.known)
  }

  private remember(ref: ChunkRef, blob: BlobInfo): void {
    const key = ref.digest.toString('latin1')
    if (!this.known.has(key)) this.known.set(key, { ref, blob })
  }

  private checkDigester(d: DigesterName, where: string): void {
    if (d !== this.digester)
      throw new ConverterError('ERR_BAD_ARGUMENT', `chunk dict ${where} uses digester ${d}, this build uses ${this.digester}`)
  }
}

/** Blob index 0 of a build is its own blob; dictionary blobs follow in first-use order. */
export class DictView {
  readonly blobs: BlobInfo[] = []
  private readonly blobIndex = new Map<string, number>()
  private readonly mapped = new Map<string, ChunkRef>()

  constructor(private readonly known: ReadonlyMap<string, Known>) {}

  /** The chunk with this digest (latin1 key), with its blob index in the build's blob table. */
  lookup(key: string): ChunkRef | undefined {
    const hit = this.mapped.get(key)
    if (hit !== undefined) return hit
    const k = this.known.get(key)
    if (k === undefined) return undefined
    let idx = this.blobIndex.get(k.blob.id)
    if (idx === undefined) {
      this.blobs.push(k.blob)
      idx = this.blobs.length
      this.blobIndex.set(k.blob.id, idx)
    }
    const ref = { ...k.ref, blobIndex: idx }
    this.mapped.set(key, ref)
    return ref
  }
}
