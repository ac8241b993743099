import type { ExecutionContext } from 'ava'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { type MountedImage, mountImage, nydusImage, tempDir } from '@nydusjs/testkit'

export interface Image {
  dir: string
  boot: string
  blobs: string
  mnt: string
  cache: string
}

/** Converts a layer with the real CLI into a fresh temp dir with an empty mountpoint. */
export async function buildImage(t: ExecutionContext, source: string, extra: string[] = []): Promise<Image> {
  const dir = await tempDir(t, 'nydusd-')
  const img = { dir, boot: join(dir, 'image.boot'), blobs: join(dir, 'blobs'), mnt: join(dir, 'mnt'), cache: join(dir, 'cache') }
  await mkdir(img.mnt)
  const r = await nydusImage(['create', source, '--bootstrap', img.boot, '--blob-dir', img.blobs, ...extra])
  if (r.code !== 0) throw new Error(`nydus-image create failed: ${r.stderr}`)
  return img
}

export const localConfig = (img: Image, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  device: { backend: { type: 'localfs', config: { dir: img.blobs } }, cache: { type: 'blobcache', config: { work_dir: img.cache } } },
  ...extra
})

/** The image mounted over one FUSE transport, whatever NYDUSD_TEST_TRANSPORT says, with a localfs backend and a blobcache. */
export async function mountOver(
  t: ExecutionContext,
  img: Image,
  transport: 'direct' | 'fuse-native',
  extra: Record<string, unknown> = {},
  env?: Record<string, string>
): Promise<MountedImage> {
  return await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    config: localConfig(img, extra),
    mnt: img.mnt,
    args: ['--fuse-transport', transport],
    env
  })
}

export const httpConfig = (img: Image, url: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  device: { backend: { type: 'http', config: { url, timeout: 5 } }, cache: { type: 'blobcache', config: { work_dir: img.cache } } },
  ...extra
})

export { nonUtf8 } from '@nydusjs/testkit'
