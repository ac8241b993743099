import { mkdir, rename, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pullBootstrap } from '@nydusjs/storage'
import { RegistryClient, hostPlatform, insecureScheme, parseImageRef } from '@nydusjs/registry'
import { parseConfig, type NydusdConfig } from './config.js'

export interface ImageSourceOptions {
  /** Used as is when given (e.g. an s3 backend for images whose blobs are in S3); else a registry backend for the image. */
  config?: NydusdConfig
  insecure?: boolean
  platform?: string
  /** Holds the pulled bootstrap and, without a config, the blob cache. */
  workDir?: string
}

/**
 * `nydusd --image REF`: the converted image's bootstrap pulled from its
 * manifest, and (without a config) a registry backend reading its blobs
 * lazily from the same repository with a blobcache under the work dir.
 */
export async function prepareImage(
  text: string,
  o: ImageSourceOptions
): Promise<{ config: NydusdConfig; bootstrap: string; digest: string }> {
  const ref = parseImageRef(text)
  const scheme = o.insecure === true ? await insecureScheme(ref.host) : 'https'
  const client = new RegistryClient({ host: ref.host, scheme, skipVerify: o.insecure })
  try {
    const pulled = await pullBootstrap(client, ref.repo, ref.ref, o.platform ?? hostPlatform())
    const dir = o.workDir ?? join(tmpdir(), 'nydusd')
    await mkdir(dir, { recursive: true })
    const bootstrap = join(dir, `${pulled.digest.slice('sha256:'.length)}.boot`)
    await writeFile(`${bootstrap}.tmp-${process.pid}`, pulled.bootstrap)
    await rename(`${bootstrap}.tmp-${process.pid}`, bootstrap)
    const config =
      o.config ??
      parseConfig(
        {
          device: {
            backend: { type: 'registry', config: { scheme, host: ref.host, repo: ref.repo, skip_verify: o.insecure === true } },
            cache: { type: 'blobcache', config: { work_dir: join(dir, 'cache') } }
          }
        },
        `--image ${text}`
      )
    return { config, bootstrap, digest: pulled.digest }
  } finally {
    await client.close()
  }
}
