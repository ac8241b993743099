import { ANNOTATION_NYDUS_BLOB_IDS, loadDigester, readTree, type BootstrapReader, type ChunkRef, type Digester } from '@nydusjs/rafs'
import { RegistryBackend, pullBootstrap, type BlobBackend } from '@nydusjs/storage'
import { hostPlatform, parseImageRef, resolveImage, type RegistryClient } from '@nydusjs/registry'
import { verifyChunk } from '../blob-store.js'
import { checkBootstrap, type CheckReport } from '../check.js'
import { ConverterError } from '../errors.js'
import { LAYER_TYPES } from '../oci.js'
import { loadS3 } from './convert-remote.js'
import { streamedLayerSource } from './layer-source.js'
import { Registries } from './registries.js'
import { SourceTree, compareTrees } from './source-tree.js'

export interface RemoteCheckOptions {
  target: string
  source?: string
  platform?: string
  targetInsecure?: boolean
  sourceInsecure?: boolean
  /** For images whose blobs live in S3. */
  backendConfig?: string
}

export interface RemoteCheckReport extends CheckReport {
  target_digest?: string
  differences: string[]
}

const MAX_RANGE = 8 * 1024 * 1024

/** `check --target REF [--source REF]`: the bootstrap, every chunk through the registry, and the tree against the source's layers. */
export async function checkRemote(o: RemoteCheckOptions): Promise<RemoteCheckReport> {
  const dst = parseImageRef(o.target)
  const regs = new Registries()
  const report: RemoteCheckReport = { bootstrap: o.target, blobsChecked: 0, chunksChecked: 0, problems: [], differences: [] }
  try {
    const tc = await regs.client(dst.host, o.targetInsecure === true)
    const platform = o.platform ?? hostPlatform()
    const pulled = await pullBootstrap(tc, dst.repo, dst.ref, platform)
    report.target_digest = pulled.digest
    const r = await checkBootstrap(pulled.bootstrap, report)
    if (r === undefined) return report
    const inS3 = pulled.layer.annotations?.[ANNOTATION_NYDUS_BLOB_IDS] !== undefined
    const layerIds = new Set(pulled.manifest.layers.map(l => l.digest))
    for (const b of r.blobs())
      if (!inS3 && !layerIds.has(`sha256:${b.id}`)) report.problems.push(`blob ${b.id}: not listed as a layer of the manifest`)
    const backend: BlobBackend = inS3
      ? await loadS3(o.backendConfig)
      : new RegistryBackend({ host: dst.host, repo: dst.repo, scheme: tc.scheme, skipVerify: o.targetInsecure })
    try {
      await checkRemoteBlobs(r, backend, report)
    } finally {
      await backend.close()
    }
    if (o.source !== undefined) report.differences = await compareWithSource(regs, o, platform, r)
    return report
  } finally {
    await regs.close()
  }
}

/** Every chunk read by range (neighbours merged up to 8 MiB, so memory stays bounded) and checked against its digest. */
async function checkRemoteBlobs(r: BootstrapReader, backend: BlobBackend, report: CheckReport): Promise<void> {
  const digester = await loadDigester(r.sb.digester)
  const blobs = r.blobs()
  const byBlob = blobs.map(() => new Map<number, ChunkRef>())
  for (let i = 0; i < r.sb.chunkCount; i++) {
    const c = r.chunk(i)
    byBlob[c.blobIndex].set(c.compressedOffset, c)
  }
  for (const [i, blob] of blobs.entries()) {
    try {
      const size = await backend.size(blob.id)
      if (size !== blob.compressedSize)
        throw new ConverterError('ERR_BLOB_CORRUPT', `is ${size} bytes, the bootstrap says ${blob.compressedSize}`)
      const chunks = [...byBlob[i].values()].sort((a, b) => a.compressedOffset - b.compressedOffset)
      for (let k = 0; k < chunks.length; ) {
        const start = chunks[k].compressedOffset
        let end = k
        while (end + 1 < chunks.length && chunks[end + 1].compressedOffset + chunks[end + 1].compressedSize - start <= MAX_RANGE) end++
        const last = chunks[end]
        const raw = await backend.read(blob.id, start, last.compressedOffset + last.compressedSize - start)
        for (; k <= end; k++) verifyAt(raw, chunks[k], start, blob.id, digester, report)
      }
      report.blobsChecked++
    } catch (err) {
      const e = err as Error & { code?: string }
      report.problems.push(`blob ${blob.id}: ${e.message.replace(`blob ${blob.id}: `, '')}`)
    }
  }
}

function verifyAt(raw: Buffer, c: ChunkRef, base: number, blobId: string, digester: Digester, report: CheckReport): void {
  verifyChunk(raw.subarray(c.compressedOffset - base, c.compressedOffset - base + c.compressedSize), c, blobId, digester)
  report.chunksChecked++
}

async function compareWithSource(regs: Registries, o: RemoteCheckOptions, platform: string, r: BootstrapReader): Promise<string[]> {
  const src = parseImageRef(o.source!)
  const sc: RegistryClient = await regs.client(src.host, o.sourceInsecure === true)
  const img = await resolveImage(sc, src.repo, src.ref, platform, false)
  const want = new SourceTree(r.sb.chunkSize, await loadDigester(r.sb.digester))
  for (const [i, l] of img.manifest.layers.entries()) {
    const where = `source ${o.source} layer ${i + 1} (${l.digest})`
    const type = LAYER_TYPES[l.mediaType]
    if (type === undefined)
      throw new ConverterError('ERR_OCI_LAYOUT', `${where}: unsupported layer media type ${JSON.stringify(l.mediaType)}`)
    const source = streamedLayerSource(await sc.blobStream(src.repo, l.digest), l, type, where)
    await want.applyLayer(source)
    await source.verified
  }
  return compareTrees(want, readTree(r))
}
