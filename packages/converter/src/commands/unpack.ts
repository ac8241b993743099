import { Flags } from '@oclif/core'
import { loadDigester, readTree } from '@nydusjs/rafs'
import { loadBootstrap } from '../image.js'
import { unpackToTar } from '../unpack.js'
import { BaseCommand } from './base.js'

export default class Unpack extends BaseCommand {
  static summary = 'Write an image back out as a tar, verifying every chunk'
  static examples = ['<%= config.bin %> unpack --bootstrap image.boot --blob-dir blobs/ --output rootfs.tar']
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'bootstrap of the image', required: true }),
    'blob-dir': Flags.string({ char: 'D', description: 'directory holding the blobs', required: true }),
    output: Flags.string({ char: 'o', description: 'tar file to write', required: true })
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Unpack)
    const r = await loadBootstrap(flags.bootstrap)
    const res = await unpackToTar(readTree(r), flags['blob-dir'], await loadDigester(r.sb.digester), flags.output)
    this.print(`wrote ${flags.output}: ${res.entries} entries, ${res.bytes} bytes`)
  }
}
