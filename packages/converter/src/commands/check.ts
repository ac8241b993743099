import { Flags } from '@oclif/core'
import { checkImage } from '../check.js'
import { ConverterError } from '../errors.js'
import { checkRemote } from '../remote/check-remote.js'
import { BaseCommand } from './base.js'

export default class Check extends BaseCommand {
  static summary =
    'Verify an image: a bootstrap (and its blobs with --blob-dir), or a converted image in a registry (--target, compared with --source)'
  static examples = [
    '<%= config.bin %> check --bootstrap image.boot --blob-dir blobs/ --json',
    '<%= config.bin %> check --target registry.local:5000/app:1-nydus --source registry.local:5000/app:1'
  ]

  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'bootstrap to check' }),
    'blob-dir': Flags.string({ char: 'D', description: 'also verify every chunk of the blobs in this directory' }),
    target: Flags.string({
      description: 'converted image REGISTRY/REPO:TAG: its bootstrap and every chunk are verified through the registry'
    }),
    source: Flags.string({ description: 'with --target: the source image its filesystem must equal' }),
    platform: Flags.string({ description: "platform to check in an image index (default: this machine's)" }),
    'target-insecure': Flags.boolean({ description: 'target registry over plain HTTP or HTTPS without certificate checks' }),
    'source-insecure': Flags.boolean({ description: 'source registry over plain HTTP or HTTPS without certificate checks' }),
    'backend-config': Flags.string({ description: 'the s3 backend config, for images whose blobs are in S3' }),
    json: Flags.boolean({ description: 'print the report as JSON' })
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Check)
    if ((flags.bootstrap === undefined) === (flags.target === undefined))
      throw new ConverterError('ERR_BAD_ARGUMENT', 'give either --bootstrap FILE or --target REF')
    if (flags.target !== undefined) return await this.remote(flags.target, flags)
    const report = await checkImage(flags.bootstrap!, flags['blob-dir'])
    if (flags.json) this.print(JSON.stringify(report, null, 2))
    else if (report.problems.length === 0) {
      this.print(
        `OK ${flags.bootstrap}: root digest ${report.rootDigest}, ${report.inodes} inodes, ${report.chunks} chunks${flags['blob-dir'] === undefined ? '' : `, ${report.blobsChecked} blobs and ${report.chunksChecked} chunks verified`}`
      )
    }
    if (report.problems.length > 0) {
      throw new ConverterError('ERR_CHECK_FAILED', `${flags.bootstrap} failed: ${report.problems.join('; ')}`)
    }
  }

  private async remote(
    target: string,
    flags: {
      source?: string
      platform?: string
      'target-insecure': boolean
      'source-insecure': boolean
      'backend-config'?: string
      json: boolean
    }
  ): Promise<void> {
    const report = await checkRemote({
      target,
      source: flags.source,
      platform: flags.platform,
      targetInsecure: flags['target-insecure'],
      sourceInsecure: flags['source-insecure'],
      backendConfig: flags['backend-config']
    })
    if (flags.json) this.print(JSON.stringify(report, null, 2))
    const bad = report.problems.length + report.differences.length
    if (bad === 0) {
      if (!flags.json)
        this.print(
          `OK ${target} (${report.target_digest}): root digest ${report.rootDigest}, ${report.inodes} inodes, ${report.blobsChecked} blobs and ${report.chunksChecked} chunks verified${flags.source === undefined ? '' : `, same filesystem as ${flags.source}`}`
        )
      return
    }
    // The list on stdout, one line each; the error line names the counts.
    if (!flags.json) for (const l of [...report.problems, ...report.differences]) this.print(l)
    throw new ConverterError(
      'ERR_CHECK_FAILED',
      `${target}: ${report.problems.length} problem(s), ${report.differences.length} difference(s) from the source`
    )
  }
}
