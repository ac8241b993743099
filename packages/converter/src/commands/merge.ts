import { Flags } from '@oclif/core'
import { mergeBootstraps } from '../image.js'
import { BaseCommand } from './base.js'

export default class Merge extends BaseCommand {
  static summary = 'Stack layer bootstraps (lowest first) into one image bootstrap, applying OCI whiteouts'
  static examples = ['<%= config.bin %> merge --bootstrap image.boot base.boot app.boot']
  static strict = false
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'where to write the merged bootstrap', required: true }),
    'output-json': Flags.string({ description: 'write a JSON summary to this file (- for stdout)' })
  }

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Merge)
    const res = await mergeBootstraps(flags.bootstrap, argv as string[])
    await this.writeJson(flags['output-json'], { bootstrap: flags.bootstrap, root_digest: res.rootDigest, blobs: res.blobs })
    if (flags['output-json'] !== '-') this.print(`root digest ${res.rootDigest}\nbootstrap ${flags.bootstrap}, ${res.blobs.length} blobs`)
  }
}
