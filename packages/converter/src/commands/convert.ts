import { Flags } from '@oclif/core'
import { convertOciLayout } from '../image.js'
import { Progress } from '../progress.js'
import { BaseCommand, buildFlags, buildOptions } from './base.js'

export default class Convert extends BaseCommand {
  static summary = 'Convert an OCI image layout into an image bootstrap (DIR/image.boot) and data blobs (DIR/blobs/)'
  static examples = [
    '<%= config.bin %> convert --oci-dir ./busybox-oci:latest --output ./busybox-nydus',
    'skopeo copy docker://REGISTRY/app:1 oci:app-oci:1 && <%= config.bin %> convert --oci-dir app-oci:1 --output app-nydus'
  ]

  static flags = {
    'oci-dir': Flags.string({ description: 'OCI image layout, optionally with :REF to pick an image', required: true }),
    output: Flags.string({ char: 'o', description: 'output directory', required: true }),
    platform: Flags.string({ description: 'platform to pick from an image index', default: 'linux/amd64' }),
    ...buildFlags
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(Convert)
    const progress = new Progress('converting ')
    const res = await convertOciLayout({
      ociDir: flags['oci-dir'],
      output: flags.output,
      platform: flags.platform,
      ...buildOptions(flags),
      onProgress: (l, b) => progress.update(b, `layer ${l + 1} `)
    })
    progress.done()
    await this.writeJson(flags['output-json'], { bootstrap: res.bootstrap, root_digest: res.rootDigest, blobs: res.blobs, layers: res.layers })
    if (flags['output-json'] !== '-') this.print(`root digest ${res.rootDigest}\nbootstrap ${res.bootstrap}, ${res.layers.length} layers, ${res.blobs.length} blobs`)
  }
}
