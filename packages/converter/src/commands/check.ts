import { Flags } from '@oclif/core'
import { checkImage } from '../check.js'
import { ConverterError } from '../errors.js'
import { BaseCommand } from './base.js'

export default class Check extends BaseCommand {
  static summary = 'Verify a bootstrap (checksum, references, merkle tree) and, with --blob-dir, every chunk of every blob'
  static examples = ['<%= config.bin %> check --bootstrap image.boot', '<%= config.bin %> check --bootstrap image.boot --blob-dir blobs/ --json']
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'bootstrap to check', required: true }),
    'blob-dir': Flags.string({ char: 'D', description: 'also verify every chunk of the blobs in this directory' }),
    json: Flags.boolean({ description: 'print the report as JSON' })
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(Check)
    const report = await checkImage(flags.bootstrap, flags['blob-dir'])
    if (flags.json) this.print(JSON.stringify(report, null, 2))
    else if (report.problems.length === 0) {
      this.print(`OK ${flags.bootstrap}: root digest ${report.rootDigest}, ${report.inodes} inodes, ${report.chunks} chunks${flags['blob-dir'] === undefined ? '' : `, ${report.blobsChecked} blobs and ${report.chunksChecked} chunks verified`}`)
    }
    if (report.problems.length > 0) {
      throw new ConverterError('ERR_CHECK_FAILED', `${flags.bootstrap} failed: ${report.problems.join('; ')}`)
    }
  }
}
