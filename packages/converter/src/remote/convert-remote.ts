import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { encodeBootstrap, encodeBootstrapLayer, isReg, loadDigester, mergeLayers, walkTree, type RafsTree } from '@nydusjs/rafs'
import { S3Backend, s3Options } from '@nydusjs/storage'
import {
  OCI_INDEX,
  OCI_MANIFEST,
  hostPlatform,
  parseImageRef,
  platformString,
  type ImageRef,
  type Platform,
  type PushResult,
  type RegistryClient
} from '@nydusjs/registry'
import { buildLayer, layerWorkers, type LayerBuild } from '../builder/build-layer.js'
import { BuildCache } from './build-cache.js'
import { cacheOptions, cachedLayer, exportCache, hitReport, openCache } from './layer-cache.js'
import { ConverterError } from '../errors.js'
import { LAYER_TYPES } from '../oci.js'
import { bootstrapLayer, dataLayers, nydusConfig, nydusIndex, nydusManifest, type Blob, type IndexEntry } from './nydus-manifest.js'
import { expandPrefetch, readPrefetchPatterns } from './prefetch-patterns.js'
import { RegistryBlobTarget, Registries, S3BlobTarget, type BlobStream, type BlobTarget } from './registries.js'
import { dictFor, loadDicts, selectImages, type SourceImage } from './source.js'
import { streamedLayerSource } from './layer-source.js'
import type { Ctx, ImageReport, LayerReport, RemoteConvertOptions, RemoteConvertReport } from './convert-types.js'

export type { ImageReport, LayerReport, RemoteConvertOptions, RemoteConvertReport } from './convert-types.js'

/**
 * `nydus-image convert --source REF --target REF`: each layer is streamed from
 * the source registry through the builder, its blob pushed while the next layer
 * converts; then the bootstrap layer, config and manifest. The target tag is
 * written last, so a failure never leaves it half-written.
 */
export async function convertRemote(o: RemoteConvertOptions): Promise<RemoteConvertReport> {
  const t0 = performance.now()
  const src = parseImageRef(o.source)
  const dst = parseImageRef(o.target)
  if (dst.digest !== undefined) throw new ConverterError('ERR_BAD_ARGUMENT', `--target ${o.target}: name a tag, not a digest`)
  const regs = new Registries()
  const work = await mkdtemp(join(o.workDir ?? tmpdir(), 'nydus-convert-'))
  // Started now, they load while the manifests are fetched; every layer of every image uses them.
  const pool = layerWorkers(o)
  try {
    const insecure = (host: string): boolean =>
      (host === src.host && o.sourceInsecure === true) || (host === dst.host && o.targetInsecure === true)
    const sc = await regs.client(src.host, insecure(src.host))
    const tc = await regs.client(dst.host, insecure(dst.host))
    const target: BlobTarget =
      o.backendType === 's3' ? new S3BlobTarget(await loadS3(o.backendConfig)) : new RegistryBlobTarget(tc, dst.repo)
    const top = await sc.getManifest(src.repo, src.ref)
    const { images, isIndex } = await selectImages(sc, src.repo, top, o.source, o)
    const first = images[0].desc.platform
    const dicts = await loadDicts(
      o.chunkDict ?? [],
      regs,
      insecure,
      o.platforms?.[0] ?? (first === undefined ? hostPlatform() : platformString(first))
    )
    const patterns = o.prefetchPatterns === undefined ? [] : await readPrefetchPatterns(o.prefetchPatterns)
    const streamPush = target.openStream !== undefined && (o.streamPush ?? !(await tagExists(tc, dst)))
    const cache = await openCache(o, regs, insecure)
    const ctx: Ctx = {
      o,
      src,
      dst,
      sc,
      tc,
      target,
      dicts,
      patterns,
      work,
      digester: o.digester ?? 'sha256',
      streamPush,
      pool,
      cache,
      cacheOptions: cacheOptions(o, dicts)
    }
    const asIndex = (isIndex && images.length > 1) || o.mergePlatform === true
    const reports: ImageReport[] = []
    const entries: IndexEntry[] = []
    let single: Blob | undefined
    for (const [i, img] of images.entries()) {
      const r = await convertImage(ctx, img, i, asIndex)
      reports.push(r.report)
      single = r.manifest
      entries.push({ platform: r.platform, source: o.mergePlatform === true ? img.desc : undefined, converted: r.manifest.desc })
      if (o.mergePlatform === true) await copySourceImage(ctx, img)
    }
    const final = asIndex ? nydusIndex(entries) : single!
    const digest = await tc.putManifest(dst.repo, dst.ref, asIndex ? OCI_INDEX : OCI_MANIFEST, final.body)
    const cacheReport = cache === undefined ? undefined : await exportCache(ctx, cache)
    return {
      source: { ref: o.source, digest: top.digest },
      target: { ref: o.target, digest, media_type: asIndex ? OCI_INDEX : OCI_MANIFEST },
      backend: target.kind,
      images: reports,
      pushed_bytes: reports.reduce((n, r) => n + r.pushed_bytes, 0),
      dict_saved_bytes: reports.reduce((n, r) => n + r.dict_saved_bytes, 0),
      ...(cacheReport === undefined ? {} : { build_cache: cacheReport }),
      seconds: (performance.now() - t0) / 1000
    }
  } finally {
    await pool.close()
    await rm(work, { recursive: true, force: true })
    await regs.close()
  }
}

/** One source image to a converted one; its blobs, bootstrap layer and config pushed, its manifest too when an index will name it. */
async function convertImage(
  ctx: Ctx,
  img: SourceImage,
  index: number,
  byDigest: boolean
): Promise<{ manifest: Blob; report: ImageReport; platform: Platform }> {
  const { o, src, sc, tc, dst, target } = ctx
  const config = parseConfig(
    await sc.blobBuffer(src.repo, img.manifest.config.digest),
    `source ${o.source}: config ${img.manifest.config.digest}`
  )
  const platform: Platform = img.desc.platform ?? {
    os: str(config.os, 'linux'),
    architecture: str(config.architecture, 'amd64'),
    ...(typeof config.variant === 'string' ? { variant: config.variant } : {})
  }
  const dict = dictFor(ctx.dicts, ctx.digester)
  const trees: RafsTree[] = []
  const layers: LayerReport[] = []
  const pushes: Array<Promise<void>> = []
  const own = new Set<string>()
  let pushed = 0
  try {
    for (const [i, l] of img.manifest.layers.entries()) {
      const where = `source ${o.source} layer ${i + 1}/${img.manifest.layers.length} (${l.digest})`
      const type = LAYER_TYPES[l.mediaType]
      if (type === undefined)
        throw new ConverterError('ERR_OCI_LAYOUT', `${where}: unsupported layer media type ${JSON.stringify(l.mediaType)}`)
      const t1 = performance.now()
      const key =
        ctx.cache === undefined
          ? undefined
          : BuildCache.key(
              ctx.cacheOptions,
              img.manifest.layers.slice(0, i + 1).map(d => d.digest)
            )
      const hit = key === undefined ? undefined : await cachedLayer(ctx, key, trees, own, where)
      if (hit !== undefined) {
        dict.addTree(hit.layer.tree, `layer ${i + 1}`)
        trees.push(hit.layer.tree)
        if (hit.push === 'pushed') pushed += hit.layer.blob?.size ?? 0
        layers.push({ ...hitReport(hit.layer, l), push: hit.push, seconds: (performance.now() - t1) / 1000 })
        continue
      }
      const source = streamedLayerSource(await sc.blobStream(src.repo, l.digest), l, type, where)
      const progress = (phase: 'pull' | 'push', bytes: number): void =>
        o.onProgress?.({ image: index, layer: i, layers: img.manifest.layers.length, phase, bytes })
      const stream = ctx.streamPush ? target.openStream?.() : undefined
      let build: LayerBuild
      try {
        build = await buildLayer(source, {
          ...o,
          digester: ctx.digester,
          dict,
          blobDir: ctx.work,
          durable: false,
          pool: ctx.pool,
          onProgress: b => progress('pull', b),
          blobTap: stream === undefined ? undefined : b => stream.write(b)
        })
        await source.verified
      } catch (err) {
        await stream?.abort()
        throw err
      }
      const s = build.stats
      if (key !== undefined)
        await ctx.cache!.add(key, build.tree, build.blob === undefined ? undefined : { id: build.blob.id, size: s.blobSize })
      dict.addTree(build.tree, `layer ${i + 1}`)
      trees.push(build.tree)
      const rep: LayerReport = {
        source_digest: l.digest,
        source_size: l.size,
        blob_id: build.blob?.id,
        blob_size: s.blobSize,
        push: 'none',
        streamed: false,
        ...(key === undefined ? {} : { build_cache: 'miss' as const }),
        files: s.files,
        bytes_in: s.bytesIn,
        chunks: s.chunks,
        dedup_hits: s.dedupHits,
        dict_hits: s.dictHits,
        seconds: 0
      }
      layers.push(rep)
      const blob = build.blob
      if (blob === undefined || own.has(blob.id)) {
        await stream?.abort()
        rep.seconds = (performance.now() - t1) / 1000
        continue
      }
      own.add(blob.id)
      // The push (or the end of the streamed one) runs while the next layer converts.
      const p = finishPush(target, stream, blob.id, s.blobSize, blob.tmpPath, rep, n => progress('push', n)).then(async res => {
        rep.push = res
        if (res === 'pushed') pushed += s.blobSize
        rep.seconds = (performance.now() - t1) / 1000
        await rm(blob.tmpPath, { force: true })
      })
      p.catch(() => {})
      pushes.push(p)
    }
    const tree = mergeLayers(trees)
    const prefetch = expandPrefetch(tree, ctx.patterns)
    tree.prefetch = prefetch.paths
    const { bootstrap, rootDigest } = encodeBootstrap(tree, await loadDigester(ctx.digester))
    const boot = encodeBootstrapLayer(bootstrap)
    await Promise.all(pushes)
    for (const b of tree.blobs) if (!own.has(b.id)) await target.putForeign(b.id, b.compressedSize, ctx.dicts.origins.get(b.id), ctx.work)
    const rootHex = rootDigest.toString('hex')
    const bootDesc = bootstrapLayer(boot, rootHex, target.kind === 's3' ? tree.blobs.map(b => b.id) : undefined)
    const all = [...(target.kind === 'registry' ? dataLayers(tree.blobs) : []), bootDesc]
    if ((await tc.pushBlob(dst.repo, bootDesc, (a, b) => boot.layer.subarray(a, b + 1))) === 'pushed') pushed += boot.layer.length
    const cfg = nydusConfig(config, all, boot.diffId)
    if ((await tc.pushBlob(dst.repo, cfg.desc, (a, b) => cfg.body.subarray(a, b + 1))) === 'pushed') pushed += cfg.body.length
    const manifest = nydusManifest(cfg.desc, all, img.desc.digest)
    if (byDigest) await tc.putManifest(dst.repo, manifest.desc.digest, OCI_MANIFEST, manifest.body)
    return {
      manifest,
      platform,
      report: {
        platform: platformString(platform),
        source_digest: img.desc.digest,
        target_digest: manifest.desc.digest,
        bootstrap_digest: boot.digest,
        root_digest: rootHex,
        blobs: tree.blobs.map(b => b.id),
        layers,
        pushed_bytes: pushed,
        dict_saved_bytes: dictSaved(tree, own),
        prefetch_files: prefetch.paths.length,
        prefetch_unmatched: prefetch.unmatched
      }
    }
  } catch (err) {
    await Promise.allSettled(pushes)
    throw err
  }
}

/** Completes a streamed push, or pushes the blob from its file when there was none or it failed. */
async function finishPush(
  target: BlobTarget,
  stream: BlobStream | undefined,
  id: string,
  size: number,
  path: string,
  rep: LayerReport,
  onBytes: (n: number) => void
): Promise<PushResult> {
  if (stream !== undefined) {
    const res = await stream.finish(`sha256:${id}`, size)
    if (!(res instanceof Error)) {
      rep.streamed = res === 'pushed'
      if (res === 'pushed') onBytes(size)
      return res
    }
    rep.stream_fallback = res.message
  }
  return await target.put(id, size, path, onBytes)
}

/** Whether the target tag names an image already. */
async function tagExists(tc: RegistryClient, dst: ImageRef): Promise<boolean> {
  try {
    await tc.getManifest(dst.repo, dst.ref)
    return true
  } catch {
    return false
  }
}

/** Compressed bytes of the distinct chunks the image takes from dictionary blobs instead of pushing them. */
function dictSaved(tree: RafsTree, own: Set<string>): number {
  const seen = new Set<string>()
  let n = 0
  for (const { dentry } of walkTree(tree.root)) {
    if (!isReg(dentry.inode.mode)) continue
    for (const c of dentry.inode.chunks) {
      const key = c.digest.toString('latin1')
      if (own.has(tree.blobs[c.blobIndex].id) || seen.has(key)) continue
      seen.add(key)
      n += c.compressedSize
    }
  }
  return n
}

/** `--merge-platform`: the source manifest goes into the target repository beside its conversion, blobs mounted or copied. */
async function copySourceImage(ctx: Ctx, img: SourceImage): Promise<void> {
  const { sc, tc, src, dst } = ctx
  const target = new RegistryBlobTarget(tc, dst.repo)
  for (const d of [img.manifest.config, ...img.manifest.layers]) {
    await target.putForeign(d.digest.slice('sha256:'.length), d.size, { client: sc, repo: src.repo }, ctx.work)
  }
  const m = await sc.getManifest(src.repo, img.desc.digest)
  await tc.putManifest(dst.repo, img.desc.digest, m.mediaType, m.body)
}

export async function loadS3(path: string | undefined): Promise<S3Backend> {
  if (path === undefined)
    throw new ConverterError('ERR_BAD_ARGUMENT', '--backend-type s3 needs --backend-config FILE (the s3 backend config of nydusd)')
  const text = await readFile(path, 'utf8').catch((err: Error) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `--backend-config ${path}: ${err.message}`)
  })
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new ConverterError('ERR_BAD_ARGUMENT', `--backend-config ${path}: invalid JSON (${(err as Error).message})`)
  }
  // Loaded here: zod costs start-up time that only the s3 mode needs.
  const { S3ConfigSchema, schemaIssues } = await import('@nydusjs/storage/s3-config')
  const r = S3ConfigSchema.safeParse(json)
  if (!r.success) throw new ConverterError('ERR_BAD_ARGUMENT', `--backend-config ${path}: ${schemaIssues(r.error)}`)
  return new S3Backend(s3Options(r.data))
}

function parseConfig(buf: Buffer, where: string): Record<string, unknown> {
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {}
  throw new ConverterError('ERR_OCI_LAYOUT', `${where}: not a JSON object`)
}

const str = (v: unknown, d: string): string => (typeof v === 'string' ? v : d)
