import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { statusOf } from '@nydusjs/errors'
import { FORMAT_VERSION } from '@nydusjs/rafs'
import type { Logger } from 'pino'
import { SnapshotterError } from './errors.js'
import { LABEL_CRI_IMAGE_REF, LABEL_IMAGE_REF } from './labels.js'
import { nativeCopy } from './native-fallback.js'
import type { NydusdManager } from './nydusd-manager.js'
import type { SnapshotRecord } from './store.js'

/** The lower layer of a converted image: nydusd's mount, or a native copy when that cannot be had. */
export interface RemoteLower {
  mountpoint: string
  /** nydusd's config (absent for a native copy). */
  config?: string
}

/**
 * The converted-image side of the snapshotter: which image a bootstrap
 * snapshot belongs to, its nydusd mount, the native fallback, and Kata's
 * `extraoption=`.
 */
export class RemoteLayers {
  constructor(
    private readonly nydusd: NydusdManager | undefined,
    private readonly o: { nativeFallback: boolean; log: Logger },
    private readonly dirOf: (id: number) => string,
    private readonly get: (key: string) => SnapshotRecord
  ) {}

  /** The image reference the layers were pulled with (ctr-remote's label or CRI's). */
  imageOf(boot: SnapshotRecord): string | undefined {
    const ref = (r: SnapshotRecord): string | undefined => r.labels[LABEL_IMAGE_REF] ?? r.labels[LABEL_CRI_IMAGE_REF]
    let image = ref(boot)
    for (let p = boot.parent; image === undefined && p !== ''; ) {
      const r = this.get(p)
      image = ref(r)
      p = r.parent
    }
    return image
  }

  /**
   * The image's nydusd mount, the daemon started if it is not running. When
   * it cannot mount for a reason that is not the image's own (the image is
   * fine, FUSE or the daemon is not), a native copy of the image instead.
   */
  async lower(boot: SnapshotRecord): Promise<RemoteLower> {
    const image = this.imageOf(boot)
    if (this.nydusd === undefined) throw new SnapshotterError('ERR_CONFIG', 'a converted image needs nydusd, and none is configured')
    if (image === undefined) {
      throw new SnapshotterError(
        'ERR_BAD_ARGUMENT',
        "the converted image's layers carry no image reference (pull it with ctr-remote rpull or through CRI)"
      )
    }
    const dir = this.dirOf(boot.id)
    const bootstrap = join(dir, 'fs', 'image', 'image.boot')
    if (existsSync(join(dir, 'native'))) return { mountpoint: join(dir, 'native') }
    try {
      return await this.nydusd.ensure(String(boot.id), bootstrap, image)
    } catch (err) {
      // A corrupt image or a missing blob would fail the copy the same way: say so now.
      const { kind } = statusOf(err)
      if (!this.o.nativeFallback || kind === 'corrupt' || kind === 'not-found') throw err
      this.o.log.warn({ image, err: (err as Error).message }, 'lazy mount failed: copying the image natively')
      const backend = await this.nydusd.backendConfig(image)
      return { mountpoint: await nativeCopy({ bootstrap, dir, backend, log: this.o.log }) }
    }
  }

  /** What Kata's agent needs to run the image's nydusd in the guest, as nydus-snapshotter encodes it. */
  async extraOption(boot: SnapshotRecord, config: string): Promise<string> {
    const extra = {
      source: join(this.dirOf(boot.id), 'fs', 'image', 'image.boot'),
      config: await readFile(config, 'utf8'),
      snapshotdir: this.dirOf(boot.id),
      fs_version: `rafs-js-v${FORMAT_VERSION}`
    }
    return `extraoption=${Buffer.from(JSON.stringify(extra)).toString('base64')}`
  }
}
