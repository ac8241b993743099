import { errorCode } from '@nydusjs/errors'
import { createHash } from 'node:crypto'
import {
  ANNOTATION_NYDUS_BLOB,
  ANNOTATION_NYDUS_BOOTSTRAP,
  BOOTSTRAP_LAYER_MEDIA_TYPE,
  NYDUS_BLOB_MEDIA_TYPE,
  decodeBootstrapLayer,
  encodeBootstrap,
  encodeBootstrapLayer,
  loadDigester,
  openValidated,
  readTree,
  type RafsTree
} from '@nydusjs/rafs'
import { OCI_CONFIG, OCI_MANIFEST, type Descriptor, type FetchedManifest, type ImageRef, type RegistryClient } from '@nydusjs/registry'
import { ConverterError } from '../errors.js'
import { describe } from './nydus-manifest.js'

/** The cache image's manifest annotation, as nydusify's; the value differs because neither tool can read the other's bootstraps. */
export const ANNOTATION_NYDUS_CACHE = 'containerd.io/snapshot/nydus-cache'
export const BUILD_CACHE_VERSION = 'nydusjs.v1'
/** On both layers of a record: what the layer was built from and how (see `BuildCache.key`). */
export const ANNOTATION_CACHE_KEY = 'io.nydusjs.build-cache.key'
/** nydusify's names, for a record whose blob lives outside the registry (S3). */
const ANNOTATION_BLOB_DIGEST = 'containerd.io/snapshot/nydus-blob-digest'
const ANNOTATION_BLOB_SIZE = 'containerd.io/snapshot/nydus-blob-size'
const ANNOTATION_UNCOMPRESSED = 'containerd.io/uncompressed'
const MAX_LAYER_BOOTSTRAP = 256 * 1024 * 1024
const DIGEST = /^sha256:[0-9a-f]{64}$/

/** One converted layer: its layer bootstrap (a bootstrap layer tar) and the data blob it stored, if any. */
export interface CacheRecord {
  key: string
  bootstrap: Descriptor
  diffId: string
  blob?: { id: string; size: number }
}

export interface CachedLayer {
  tree: RafsTree
  blob?: { id: string; size: number }
}

export interface BuildCacheReport {
  ref: string
  hits: number
  misses: number
  records: number
  exported: boolean
  warnings: string[]
}

/**
 * `--build-cache REF`: an image whose layers are, per converted source layer,
 * its layer bootstrap and its data blob, as nydusify's build cache keeps them.
 * A layer whose key is there is not pulled or converted again: its tree comes
 * from the layer bootstrap and its blob is mounted into the target. The cache
 * only ever speeds a conversion up: an unreadable record is a warning and the
 * layer is converted.
 */
export class BuildCache {
  readonly warnings: string[] = []
  private hits = 0
  private misses = 0
  private readonly used = new Map<string, CacheRecord>()
  private readonly fresh = new Map<string, Buffer>()

  private constructor(
    readonly client: RegistryClient,
    readonly ref: ImageRef,
    private readonly old: Map<string, CacheRecord>,
    private readonly maxRecords: number
  ) {}

  /** Reads the cache's records; a missing cache is an empty one, a tag naming anything but a build cache is refused. */
  static async open(client: RegistryClient, ref: ImageRef, maxRecords: number): Promise<BuildCache> {
    const where = `--build-cache ${ref.text}`
    let m: FetchedManifest
    try {
      m = await client.getManifest(ref.repo, ref.ref)
    } catch (err) {
      if (errorCode(err) === 'ERR_MANIFEST_NOT_FOUND') return new BuildCache(client, ref, new Map(), maxRecords)
      const cache = new BuildCache(client, ref, new Map(), maxRecords)
      cache.warn(`${where}: not read (${(err as Error).message}); converting without it`)
      return cache
    }
    const body = parseJson(m.body)
    const version = body?.annotations?.[ANNOTATION_NYDUS_CACHE]
    if (typeof version !== 'string')
      throw new ConverterError(
        'ERR_BAD_ARGUMENT',
        `${where}: names an image that is not a build cache (no ${ANNOTATION_NYDUS_CACHE} annotation); name a tag of its own`
      )
    const cache = new BuildCache(client, ref, new Map(), maxRecords)
    if (version !== BUILD_CACHE_VERSION)
      cache.warn(
        `${where}: a build cache of version ${JSON.stringify(version)}, this converter writes ${BUILD_CACHE_VERSION}; it is replaced`
      )
    else cache.readRecords(Array.isArray(body?.layers) ? body.layers : [])
    return cache
  }

  /** What a layer's output depends on: the build options and the source layers up to it (lower layers' chunks are deduplicated against). */
  static key(options: string, layerDigests: readonly string[]): string {
    return (
      'sha256:' +
      createHash('sha256')
        .update(JSON.stringify({ options, layers: layerDigests }))
        .digest('hex')
    )
  }

  /**
   * The layer under `key`, decoded and validated, or undefined. `available`
   * names the blobs its tree may reference besides its own (lower layers',
   * chunk dictionaries'); a record that names others is not taken, nor one
   * that `accept` (which makes its blob available to the target) throws for.
   */
  async lookup(
    key: string,
    want: Pick<RafsTree, 'chunkSize' | 'compressor' | 'digester'>,
    available: ReadonlySet<string>,
    where: string,
    accept: (l: CachedLayer) => Promise<unknown>
  ): Promise<CachedLayer | undefined> {
    const rec = this.old.get(key)
    if (rec === undefined) {
      this.misses++
      return undefined
    }
    try {
      const layer = await this.client.blobBuffer(this.ref.repo, rec.bootstrap.digest, MAX_LAYER_BOOTSTRAP)
      const tree = readTree(await openValidated(decodeBootstrapLayer(layer, `bootstrap ${rec.bootstrap.digest}`)))
      const bad = mismatch(tree, rec, want, available)
      if (bad !== undefined) throw new Error(bad)
      const hit = { tree, blob: rec.blob }
      await accept(hit)
      this.hits++
      this.used.set(key, rec)
      return hit
    } catch (err) {
      this.misses++
      this.warn(`--build-cache ${this.ref.text}: the record for ${where} is not usable (${(err as Error).message}); converting the layer`)
      return undefined
    }
  }

  /** A layer converted in this run; `tree` must not have been merged yet (merging rewrites its chunk references). */
  async add(key: string, tree: RafsTree, blob: { id: string; size: number } | undefined): Promise<void> {
    const { bootstrap } = encodeBootstrap(tree, await loadDigester(tree.digester))
    const enc = encodeBootstrapLayer(bootstrap)
    this.fresh.set(enc.digest, enc.layer)
    this.used.set(key, {
      key,
      bootstrap: { mediaType: BOOTSTRAP_LAYER_MEDIA_TYPE, digest: enc.digest, size: enc.layer.length },
      diffId: enc.diffId,
      blob
    })
  }

  /**
   * Writes the cache image: this run's records first, then older ones up to
   * the limit. `putBlob` makes a new record's data blob present in the cache
   * repository (a mount from the target); without it (S3) the blob's digest
   * is only named in an annotation.
   */
  async export(putBlob?: (id: string, size: number) => Promise<unknown>): Promise<boolean> {
    const oldKeys = [...this.old.keys()]
    if (this.fresh.size === 0 && [...this.used.keys()].every((k, i) => oldKeys[i] === k)) return false
    const records = [...this.used.values(), ...[...this.old.values()].filter(r => !this.used.has(r.key))].slice(0, this.maxRecords)
    const layers: Descriptor[] = []
    const diffIds: string[] = []
    for (const r of records) {
      const fresh = this.fresh.get(r.bootstrap.digest)
      if (fresh !== undefined) await this.client.pushBlob(this.ref.repo, r.bootstrap, (a, b) => fresh.subarray(a, b + 1))
      const annotations: Record<string, string> = {
        [ANNOTATION_NYDUS_BOOTSTRAP]: 'true',
        [ANNOTATION_CACHE_KEY]: r.key,
        [ANNOTATION_UNCOMPRESSED]: r.diffId
      }
      if (r.blob !== undefined && putBlob === undefined)
        Object.assign(annotations, { [ANNOTATION_BLOB_DIGEST]: `sha256:${r.blob.id}`, [ANNOTATION_BLOB_SIZE]: String(r.blob.size) })
      layers.push({ ...r.bootstrap, annotations })
      diffIds.push(r.diffId)
      if (r.blob === undefined || putBlob === undefined) continue
      if (fresh !== undefined) await putBlob(r.blob.id, r.blob.size)
      layers.push({
        mediaType: NYDUS_BLOB_MEDIA_TYPE,
        digest: `sha256:${r.blob.id}`,
        size: r.blob.size,
        annotations: { [ANNOTATION_NYDUS_BLOB]: 'true', [ANNOTATION_CACHE_KEY]: r.key }
      })
      diffIds.push(`sha256:${r.blob.id}`)
    }
    // A config only because a manifest needs one; its diff ids match the layers as nydusify's do.
    const config = describe(
      Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } })),
      OCI_CONFIG
    )
    await this.client.pushBlob(this.ref.repo, config.desc, (a, b) => config.body.subarray(a, b + 1))
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: config.desc,
      layers,
      annotations: { [ANNOTATION_NYDUS_CACHE]: BUILD_CACHE_VERSION }
    }
    await this.client.putManifest(this.ref.repo, this.ref.ref, OCI_MANIFEST, Buffer.from(JSON.stringify(manifest)))
    return true
  }

  report(exported: boolean): BuildCacheReport {
    return {
      ref: this.ref.text,
      hits: this.hits,
      misses: this.misses,
      records: Math.min(this.maxRecords, new Set([...this.used.keys(), ...this.old.keys()]).size),
      exported,
      warnings: this.warnings
    }
  }

  warn(msg: string): void {
    this.warnings.push(msg)
  }

  /** Pairs each bootstrap layer with its blob layer by key; anything else is skipped with a warning. */
  private readRecords(layers: unknown[]): void {
    const blobs = new Map<string, { id: string; size: number }>()
    for (const l of layers as Descriptor[]) {
      const key = l?.annotations?.[ANNOTATION_CACHE_KEY]
      if (l?.annotations?.[ANNOTATION_NYDUS_BLOB] === 'true' && typeof key === 'string' && DIGEST.test(String(l.digest)) && isSize(l.size))
        blobs.set(key, { id: l.digest.slice(7), size: l.size })
    }
    let skipped = 0
    for (const l of layers as Descriptor[]) {
      const a = l?.annotations
      if (a?.[ANNOTATION_NYDUS_BLOB] === 'true') continue
      const key = a?.[ANNOTATION_CACHE_KEY]
      const diffId = a?.[ANNOTATION_UNCOMPRESSED]
      if (
        a?.[ANNOTATION_NYDUS_BOOTSTRAP] !== 'true' ||
        typeof key !== 'string' ||
        !DIGEST.test(key) ||
        typeof diffId !== 'string' ||
        !DIGEST.test(diffId) ||
        !DIGEST.test(String(l.digest)) ||
        !isSize(l.size)
      ) {
        skipped++
        continue
      }
      const named = a[ANNOTATION_BLOB_DIGEST]
      const size = Number(a[ANNOTATION_BLOB_SIZE])
      const blob =
        blobs.get(key) ?? (typeof named === 'string' && DIGEST.test(named) && isSize(size) ? { id: named.slice(7), size } : undefined)
      if (!this.old.has(key))
        this.old.set(key, { key, bootstrap: { mediaType: BOOTSTRAP_LAYER_MEDIA_TYPE, digest: l.digest, size: l.size }, diffId, blob })
    }
    if (skipped > 0) this.warn(`--build-cache ${this.ref.text}: ${skipped} layer(s) are not records of this converter; skipped`)
  }
}

/** Why a decoded record cannot stand for the layer, or undefined if it can. */
function mismatch(
  tree: RafsTree,
  rec: CacheRecord,
  want: Pick<RafsTree, 'chunkSize' | 'compressor' | 'digester'>,
  available: ReadonlySet<string>
): string | undefined {
  if (!tree.layer) return 'not a layer bootstrap'
  if (tree.chunkSize !== want.chunkSize || tree.compressor !== want.compressor || tree.digester !== want.digester)
    return `built with chunk size 0x${tree.chunkSize.toString(16)}, ${tree.compressor}, ${tree.digester}`
  const own = rec.blob
  if (own !== undefined && tree.blobs.find(b => b.id === own.id)?.compressedSize !== own.size)
    return `its bootstrap does not name its blob ${own.id} of ${own.size} bytes`
  const stray = tree.blobs.find(b => b.id !== own?.id && !available.has(b.id))
  return stray === undefined
    ? undefined
    : `it references blob ${stray.id}, which is neither its own nor a lower layer's or a chunk dictionary's`
}

function parseJson(body: Buffer): { annotations?: Record<string, unknown>; layers?: unknown } | undefined {
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown
    return v !== null && typeof v === 'object' ? v : undefined
  } catch {
    return undefined
  }
}

const isSize = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0
