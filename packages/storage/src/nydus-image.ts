import { NydusError, withContext } from '@nydusjs/errors'
import { ANNOTATION_NYDUS_BOOTSTRAP, decodeBootstrapLayer } from '@nydusjs/rafs'
import { StorageError } from './errors.js'
import { resolveImage, type Descriptor, type ImageManifest, type RegistryClient } from '@nydusjs/registry'

const MAX_BOOTSTRAP_LAYER = 512 * 1024 * 1024

export interface PulledBootstrap {
  /** The converted image's manifest digest. */
  digest: string
  manifest: ImageManifest
  layer: Descriptor
  bootstrap: Buffer
}

/** The bootstrap of a converted image: its manifest (an index resolved to the converted entry), the bootstrap layer, `image/image.boot`. */
export async function pullBootstrap(client: RegistryClient, repo: string, ref: string, platform: string): Promise<PulledBootstrap> {
  const img = await resolveImage(client, repo, ref, platform, true)
  const where = `${client.host}/${repo}:${ref}`
  const layer = img.manifest.layers.find(l => l.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] === 'true')
  if (layer === undefined)
    throw new StorageError(
      'ERR_REGISTRY_RESPONSE',
      `${where} is not a converted image: no layer is annotated ${ANNOTATION_NYDUS_BOOTSTRAP}`
    )
  if (layer.size > MAX_BOOTSTRAP_LAYER)
    throw new StorageError('ERR_REGISTRY_RESPONSE', `${where}: the bootstrap layer claims ${layer.size} bytes`)
  const buf = await client.blobBuffer(repo, layer.digest, MAX_BOOTSTRAP_LAYER)
  try {
    return {
      digest: img.digest,
      manifest: img.manifest,
      layer,
      bootstrap: decodeBootstrapLayer(buf, `${where} bootstrap layer ${layer.digest}`)
    }
  } catch (err) {
    if (err instanceof NydusError) throw withContext(err, where)
    throw err
  }
}
