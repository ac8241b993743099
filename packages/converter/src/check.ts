import { NydusError } from '@nydusjs/errors'
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  BLOB_FOOTER_SIZE,
  BootstrapReader,
  RafsError,
  bootstrapChecksum,
  decodeBlobFooter,
  decodeBlobToc,
  loadDigester,
  validateBootstrap,
  type BlobInfo,
  type ChunkRef,
  type TocEntry
} from '@nydusjs/rafs'
import { LocalBlobStore } from './blob-store.js'
import { ConverterError } from './errors.js'

export interface CheckReport {
  bootstrap: string
  rootDigest?: string
  inodes?: number
  chunks?: number
  blobsChecked: number
  chunksChecked: number
  problems: string[]
}

/** Verifies a bootstrap (checksum, references, merkle tree) and, with a blob dir, every chunk. */
export async function checkImage(bootstrapPath: string, blobDir?: string): Promise<CheckReport> {
  const report: CheckReport = { bootstrap: bootstrapPath, blobsChecked: 0, chunksChecked: 0, problems: [] }
  const buf = await readFile(bootstrapPath).catch((err: Error) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `bootstrap ${bootstrapPath}: ${err.message}`)
  })
  const r = await checkBootstrap(buf, report)
  if (r === undefined) return report
  if (blobDir !== undefined) await checkBlobs(r, blobDir, report)
  return report
}

/** Checksum, structure and merkle tree; problems go into the report, and the reader comes back when usable. */
export async function checkBootstrap(buf: Buffer, report: CheckReport): Promise<BootstrapReader | undefined> {
  let r: BootstrapReader
  try {
    r = BootstrapReader.open(buf, { skipChecksum: true })
    if (!bootstrapChecksum(buf).equals(r.sb.checksum)) report.problems.push('bootstrap: checksum does not match its content')
    validateBootstrap(r, await loadDigester(r.sb.digester))
  } catch (err) {
    if (!(err instanceof RafsError)) throw err
    report.problems.push(`bootstrap: ${err.message} [${err.code}]`)
    return undefined
  }
  report.rootDigest = r.sb.rootDigest.toString('hex')
  report.inodes = r.inodeCount
  report.chunks = r.sb.chunkCount
  return r
}

async function checkBlobs(r: BootstrapReader, dir: string, report: CheckReport): Promise<void> {
  const blobs = r.blobs()
  const byBlob = new Map<number, ChunkRef[]>()
  for (let i = 0; i < r.sb.chunkCount; i++) {
    const c = r.chunk(i)
    const list = byBlob.get(c.blobIndex) ?? []
    list.push(c)
    byBlob.set(c.blobIndex, list)
  }
  const store = new LocalBlobStore(dir, blobs, await loadDigester(r.sb.digester))
  try {
    for (const [i, blob] of blobs.entries()) {
      const problem = await checkBlobFile(blob, join(dir, blob.id), store, byBlob.get(i) ?? [], report)
      if (problem !== undefined) report.problems.push(`blob ${blob.id}: ${problem}`)
      report.blobsChecked++
    }
  } finally {
    await store.close()
  }
}

async function checkBlobFile(
  blob: BlobInfo,
  path: string,
  store: LocalBlobStore,
  chunks: ChunkRef[],
  report: CheckReport
): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined)
  if (st === undefined) return `missing from ${path}`
  if (st.size !== blob.compressedSize) return `is ${st.size} bytes, the bootstrap says ${blob.compressedSize}`
  const h = createHash('sha256')
  for await (const b of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(b as Buffer)
  if (h.digest('hex') !== blob.id) return 'content does not match its id (sha256)'
  let toc: TocEntry[]
  try {
    const footer = decodeBlobFooter(await store.readRaw(blob, st.size - BLOB_FOOTER_SIZE, BLOB_FOOTER_SIZE), st.size)
    toc = decodeBlobToc(await store.readRaw(blob, footer.tocOffset, footer.tocSize), footer)
  } catch (err) {
    if (err instanceof RafsError) return err.message
    throw err
  }
  const tocAt = new Map(toc.map(e => [e.compressedOffset, e]))
  for (const c of chunks) {
    const e = tocAt.get(c.compressedOffset)
    if (e === undefined || !e.digest.equals(c.digest) || e.compressedSize !== c.compressedSize || e.flags !== c.flags) {
      return `chunk ${c.digest.toString('hex')} at ${c.compressedOffset} is not in the blob's TOC`
    }
    try {
      await store.readChunk(c)
    } catch (err) {
      if (err instanceof NydusError) return err.message.replace(`blob ${blob.id}: `, '')
      throw err
    }
    report.chunksChecked++
  }
  return undefined
}
