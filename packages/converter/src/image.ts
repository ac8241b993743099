import { NydusError, withContext } from '@nydusjs/errors'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  RafsError,
  encodeBootstrap,
  loadDigester,
  mergeLayers,
  openValidated,
  readTree,
  type BootstrapReader,
  type CompressorName,
  type DigesterName,
  type RafsTree
} from '@nydusjs/rafs'
import { buildLayer, layerWorkers, type BuildStats } from './builder/build-layer.js'
import { ChunkDict } from './builder/chunk-dict.js'
import { ConverterError } from './errors.js'
import { Staged } from './fsutil.js'
import { OciLayout, parseOciRef } from './oci.js'
import { openSource, type SourceType } from './sources/open.js'

/** Reads and fully validates a bootstrap from disk; errors name the file. */
export async function loadBootstrap(path: string): Promise<BootstrapReader> {
  const buf = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `bootstrap ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
  })
  return await openValidated(buf).catch((err: unknown) => {
    throw err instanceof NydusError ? withContext(err, `bootstrap ${path}`) : err
  })
}

export interface CreateOptions {
  source: string
  type?: SourceType
  bootstrap: string
  blobDir: string
  parentBootstrap?: string
  chunkSize?: number
  compressor?: CompressorName
  digester?: DigesterName
  chunkDict?: string[]
  prefetchFiles?: string
  workers?: number
  onProgress?: (bytes: number) => void
}

export interface CreateResult {
  bootstrap: string
  rootDigest: string
  blobs: string[]
  newBlob?: string
  stats: BuildStats
}

/** `nydus-image create`: one layer to a blob plus a layer bootstrap (or, with a parent, the merged image). */
export async function createLayer(o: CreateOptions): Promise<CreateResult> {
  const digester = o.digester ?? 'sha256'
  const dict = await ChunkDict.load(o.chunkDict ?? [], digester)
  let parent: RafsTree | undefined
  if (o.parentBootstrap !== undefined) {
    const r = await loadBootstrap(o.parentBootstrap)
    parent = readTree(r)
    dict.addTree(parent, o.parentBootstrap)
  }
  const prefetch = o.prefetchFiles === undefined ? [] : await readPrefetchList(o.prefetchFiles)
  const source = await openSource(o.source, o.type)
  const build = await buildLayer(source, { ...o, digester, dict, prefetch })
  const staged = new Staged()
  if (build.blob !== undefined) staged.add(build.blob.tmpPath, build.blob.finalPath)
  try {
    const tree = parent === undefined ? build.tree : mergeLayers([parent, build.tree])
    const { bootstrap, rootDigest } = encodeBootstrap(tree, await loadDigester(digester))
    await staged.write(o.bootstrap, bootstrap)
    await staged.commit()
    return {
      bootstrap: o.bootstrap,
      rootDigest: rootDigest.toString('hex'),
      blobs: tree.blobs.map(b => b.id),
      newBlob: build.blob?.id,
      stats: build.stats
    }
  } catch (err) {
    await staged.abort()
    throw rafsToConverter(err, o.bootstrap)
  }
}

/** One path per line; blank lines and `#` comments are skipped. */
export async function readPrefetchList(path: string): Promise<Buffer[]> {
  const text = await readFile(path).catch((err: Error) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `prefetch list ${path}: ${err.message}`)
  })
  return text
    .toString('latin1')
    .split('\n')
    .map(l => l.trim())
    .filter(l => l !== '' && !l.startsWith('#'))
    .map(l => Buffer.from(l.replace(/^\/+/, ''), 'latin1'))
}

/** `nydus-image merge`: stacks layer bootstraps, lowest first. */
export async function mergeBootstraps(out: string, layers: string[]): Promise<{ rootDigest: string; blobs: string[] }> {
  if (layers.length === 0) throw new ConverterError('ERR_BAD_ARGUMENT', 'merge needs at least one layer bootstrap')
  const trees: RafsTree[] = []
  for (const p of layers) trees.push(readTree(await loadBootstrap(p)))
  const staged = new Staged()
  try {
    const tree = mergeLayers(trees)
    const { bootstrap, rootDigest } = encodeBootstrap(tree, await loadDigester(tree.digester))
    await staged.write(out, bootstrap)
    await staged.commit()
    return { rootDigest: rootDigest.toString('hex'), blobs: tree.blobs.map(b => b.id) }
  } catch (err) {
    await staged.abort()
    throw rafsToConverter(err, out)
  }
}

export interface ConvertOptions {
  ociDir: string
  output: string
  platform?: string
  chunkSize?: number
  compressor?: CompressorName
  digester?: DigesterName
  chunkDict?: string[]
  workers?: number
  onProgress?: (layer: number, bytes: number) => void
}

/** `nydus-image convert --oci-dir`: every layer to a blob, then the merged image bootstrap. */
export async function convertOciLayout(
  o: ConvertOptions
): Promise<{ bootstrap: string; rootDigest: string; blobs: string[]; layers: BuildStats[] }> {
  const { dir, ref } = parseOciRef(o.ociDir)
  const layout = new OciLayout(dir)
  const { layers } = await layout.manifest(ref, o.platform ?? 'linux/amd64')
  const digester = o.digester ?? 'sha256'
  const blobDir = join(o.output, 'blobs')
  await mkdir(blobDir, { recursive: true })
  const dict = await ChunkDict.load(o.chunkDict ?? [], digester)
  const staged = new Staged()
  const trees: RafsTree[] = []
  const stats: BuildStats[] = []
  const pool = layerWorkers(o)
  try {
    for (const [i, l] of layers.entries()) {
      await layout.verifyBlob(l)
      const source = await openSource(layout.blobPath(l), l.type)
      const build = await buildLayer(source, { ...o, digester, dict, blobDir, pool, onProgress: b => o.onProgress?.(i, b) })
      if (build.blob !== undefined) staged.add(build.blob.tmpPath, build.blob.finalPath)
      dict.addTree(build.tree, `layer ${i}`)
      trees.push(build.tree)
      stats.push(build.stats)
    }
    const tree = mergeLayers(trees)
    const { bootstrap, rootDigest } = encodeBootstrap(tree, await loadDigester(digester))
    const out = join(o.output, 'image.boot')
    await staged.write(out, bootstrap)
    await staged.commit()
    return { bootstrap: out, rootDigest: rootDigest.toString('hex'), blobs: tree.blobs.map(b => b.id), layers: stats }
  } catch (err) {
    await staged.abort()
    throw rafsToConverter(err, o.output)
  } finally {
    await pool.close()
  }
}

function rafsToConverter(err: unknown, where: string): unknown {
  if (err instanceof RafsError) return withContext(err, where)
  return err
}
