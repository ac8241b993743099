import { createHash } from 'node:crypto'
import { withContext } from '@nydusjs/errors'
import { DEFAULT_CHUNK_SIZE, FORMAT_VERSION, isReg, walkTree, type Inode, type RafsTree } from '@nydusjs/rafs'
import { parseImageRef, type ImageRef, type PushResult } from '@nydusjs/registry'
import { ConverterError } from '../errors.js'
import { BuildCache, type BuildCacheReport, type CachedLayer } from './build-cache.js'
import type { Ctx, LayerReport, RemoteConvertOptions } from './convert-types.js'
import { RegistryBlobTarget, type Registries } from './registries.js'
import type { LoadedDicts } from './source.js'

// The build cache's steps in a registry-to-registry conversion.

/** `--build-cache`: its host is insecure when told, or when it is the source's or target's and those are. */
export async function openCache(
  o: RemoteConvertOptions,
  regs: Registries,
  insecure: (host: string) => boolean
): Promise<BuildCache | undefined> {
  if (o.buildCache === undefined) return undefined
  let ref: ImageRef
  try {
    ref = parseImageRef(o.buildCache)
  } catch (err) {
    throw withContext(err, '--build-cache', 'ERR_BAD_ARGUMENT')
  }
  if (ref.digest !== undefined) throw new ConverterError('ERR_BAD_ARGUMENT', `--build-cache ${o.buildCache}: name a tag, not a digest`)
  const dst = parseImageRef(o.target)
  // The cache is written after the target: the same tag would end up holding the cache, not the image.
  if (ref.host === dst.host && ref.repo === dst.repo && ref.ref === dst.ref)
    throw new ConverterError('ERR_BAD_ARGUMENT', `--build-cache ${o.buildCache} is the --target; give the cache a tag of its own`)
  const client = await regs.client(ref.host, o.buildCacheInsecure === true || insecure(ref.host))
  return await BuildCache.open(client, ref, o.buildCacheMaxRecords ?? 200)
}

/** The build options a cached layer must have been made with. */
function buildSpec(o: RemoteConvertOptions): Pick<RafsTree, 'chunkSize' | 'compressor' | 'digester'> {
  return { chunkSize: o.chunkSize ?? DEFAULT_CHUNK_SIZE, compressor: o.compressor ?? 'zstd', digester: o.digester ?? 'sha256' }
}

/** Everything but the source layers that a layer's blob and bootstrap depend on. */
export function cacheOptions(o: RemoteConvertOptions, dicts: LoadedDicts): string {
  const dictDigests = dicts.readers.map(r => createHash('sha256').update(r.reader.buf).digest('hex'))
  return JSON.stringify({ format: FORMAT_VERSION, ...buildSpec(o), dicts: dictDigests })
}

/** A layer taken from the build cache, its blob made present in the target first. */
export async function cachedLayer(
  ctx: Ctx,
  key: string,
  lower: RafsTree[],
  own: Set<string>,
  where: string
): Promise<{ layer: CachedLayer; push: PushResult | 'none' } | undefined> {
  const cache = ctx.cache!
  const available = new Set([
    ...lower.flatMap(t => t.blobs.map(b => b.id)),
    ...ctx.dicts.readers.flatMap(r => r.reader.blobs().map(b => b.id))
  ])
  const res: { push: PushResult | 'none' } = { push: 'none' }
  const layer = await cache.lookup(key, buildSpec(ctx.o), available, where, async hit => {
    if (hit.blob === undefined || own.has(hit.blob.id)) return
    res.push = await ctx.target.putForeign(hit.blob.id, hit.blob.size, { client: cache.client, repo: cache.ref.repo }, ctx.work)
  })
  if (layer === undefined) return undefined
  if (layer.blob !== undefined) own.add(layer.blob.id)
  return { layer, push: res.push }
}

export function hitReport(layer: CachedLayer, l: { digest: string; size: number }): Omit<LayerReport, 'push' | 'seconds'> {
  const files = new Set<Inode>()
  let chunks = 0
  for (const {
    dentry: { inode }
  } of walkTree(layer.tree.root)) {
    if (!isReg(inode.mode) || files.has(inode)) continue
    files.add(inode)
    chunks += inode.chunks.length
  }
  return {
    source_digest: l.digest,
    source_size: l.size,
    blob_id: layer.blob?.id,
    blob_size: layer.blob?.size ?? 0,
    streamed: false,
    build_cache: 'hit',
    files: files.size,
    bytes_in: 0,
    chunks,
    dedup_hits: 0,
    dict_hits: 0
  }
}

/** Writes the build cache after the target; a failure here is a warning, the image is already complete. */
export async function exportCache(ctx: Ctx, cache: BuildCache): Promise<BuildCacheReport> {
  const { tc, dst, work } = ctx
  const toCache =
    ctx.target.kind === 'registry'
      ? async (id: string, size: number) =>
          await new RegistryBlobTarget(cache.client, cache.ref.repo).putForeign(id, size, { client: tc, repo: dst.repo }, work)
      : undefined
  try {
    return cache.report(await cache.export(toCache))
  } catch (err) {
    cache.warn(`--build-cache ${cache.ref.text}: not written (${(err as Error).message})`)
    return cache.report(false)
  }
}
