import { withContext } from '@nydusjs/errors'
import { readFile } from 'node:fs/promises'
import { type BootstrapReader, RafsError, openValidated, type DigesterName } from '@nydusjs/rafs'
import { pullBootstrap } from '@nydusjs/storage'
import {
  hostPlatform,
  isNydusEntry,
  matchesPlatform,
  parseImageRef,
  parseManifest,
  platformString,
  type Descriptor,
  type FetchedManifest,
  type ImageRef,
  type ImageManifest,
  type RegistryClient
} from '@nydusjs/registry'
import { ChunkDict } from '../builder/chunk-dict.js'
import { ConverterError } from '../errors.js'
import type { Registries } from './registries.js'

export interface SourceImage {
  desc: Descriptor
  manifest: ImageManifest
}

/** The images of the source to convert: a plain manifest as is, or the asked-for platforms of an index. */
export async function selectImages(
  client: RegistryClient,
  repo: string,
  top: FetchedManifest,
  where: string,
  o: { platforms?: string[]; allPlatforms?: boolean }
): Promise<{ images: SourceImage[]; isIndex: boolean }> {
  const parsed = parseManifest(top.body, top.mediaType, `source ${where}`)
  if ('manifest' in parsed)
    return {
      images: [{ desc: { mediaType: top.mediaType, digest: top.digest, size: top.body.length }, manifest: parsed.manifest }],
      isIndex: false
    }
  // Converted entries of an earlier --merge-platform and attestation entries (platform unknown) are not images to convert.
  const entries = parsed.index.manifests.filter(d => !isNydusEntry(d) && d.platform !== undefined && d.platform.os !== 'unknown')
  let chosen: Descriptor[]
  if (o.allPlatforms === true) {
    chosen = entries
  } else {
    chosen = (o.platforms ?? [hostPlatform()]).map(p => {
      const hit = entries.find(d => matchesPlatform(d.platform, p))
      if (hit === undefined)
        throw new ConverterError(
          'ERR_OCI_LAYOUT',
          `source ${where}: no image for platform ${p} (have: ${entries.map(d => platformString(d.platform)).join(', ') || 'none'})`
        )
      return hit
    })
  }
  if (chosen.length === 0) throw new ConverterError('ERR_OCI_LAYOUT', `source ${where}: the index lists no images`)
  const images: SourceImage[] = []
  for (const d of chosen) {
    const m = await client.getManifest(repo, d.digest)
    const inner = parseManifest(m.body, m.mediaType, `source ${where}@${d.digest}`)
    if (!('manifest' in inner))
      throw new ConverterError('ERR_OCI_LAYOUT', `source ${where}: the index entry ${d.digest} is itself an index`)
    images.push({ desc: d, manifest: inner.manifest })
  }
  return { images, isIndex: true }
}

export interface LoadedDicts {
  readers: Array<{ reader: BootstrapReader; where: string }>
  /** Where each dictionary blob can be read, for dictionaries given as image references. */
  origins: Map<string, { client: RegistryClient; repo: string }>
}

/** `--chunk-dict`: a bootstrap file, or an image reference whose bootstrap is pulled. */
export async function loadDicts(
  args: string[],
  regs: Registries,
  insecure: (host: string) => boolean,
  platform: string
): Promise<LoadedDicts> {
  const out: LoadedDicts = { readers: [], origins: new Map() }
  for (const a of args) {
    const file = await readFile(a).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)))
    if (file !== undefined) {
      out.readers.push({ reader: await openDict(file, a), where: a })
      continue
    }
    let ref: ImageRef
    try {
      ref = parseImageRef(a)
    } catch {
      throw new ConverterError('ERR_SOURCE_NOT_FOUND', `chunk dict ${a}: no such file, and not an image reference`)
    }
    const client = await regs.client(ref.host, insecure(ref.host))
    const pulled = await pullBootstrap(client, ref.repo, ref.ref, platform)
    const reader = await openDict(pulled.bootstrap, a)
    out.readers.push({ reader, where: a })
    for (const b of reader.blobs()) out.origins.set(b.id, { client, repo: ref.repo })
  }
  return out
}

export function dictFor(d: LoadedDicts, digester: DigesterName): ChunkDict {
  const dict = new ChunkDict(digester)
  for (const r of d.readers) dict.addReader(r.reader, r.where)
  return dict
}

async function openDict(buf: Buffer, where: string): Promise<BootstrapReader> {
  return await openValidated(buf).catch((err: unknown) => {
    throw err instanceof RafsError ? withContext(err, `chunk dict ${where}`) : err
  })
}
