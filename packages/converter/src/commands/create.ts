import { Args, Flags } from '@oclif/core'
import { createLayer } from '../image.js'
import { Progress } from '../progress.js'
import { SOURCE_TYPES, type SourceType } from '../sources/open.js'
import { BaseCommand, buildFlags, buildOptions } from './base.js'

export default class Create extends BaseCommand {
  static summary = 'Convert one layer (a tar, tar.gz, tar.zst or a directory) into a data blob and a bootstrap'
  static examples = [
    '<%= config.bin %> create layer.tar --bootstrap layer.boot --blob-dir blobs/',
    '<%= config.bin %> create layer.tar.gz --bootstrap image.boot --blob-dir blobs/ --parent-bootstrap lower.boot',
    '<%= config.bin %> create rootfs/ --type dir --bootstrap app.boot --blob-dir blobs/ --chunk-dict base.boot --output-json out.json'
  ]

  static args = {
    source: Args.string({
      description: 'the layer: a tar file (optionally gzip or zstd compressed), a directory, or - for standard input',
      required: true
    })
  }
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'where to write the bootstrap', required: true }),
    'blob-dir': Flags.string({ char: 'D', description: 'directory that receives the data blob, named by its sha256', required: true }),
    type: Flags.string({ char: 't', description: 'source type (default: detected from its first bytes)', options: [...SOURCE_TYPES] }),
    'parent-bootstrap': Flags.string({
      description: "build on top of this bootstrap: the output is the merged image, and the parent's chunks are reused"
    }),
    'prefetch-files': Flags.string({ description: 'file listing paths (one per line) that nydusd fetches first' }),
    ...buildFlags
  }

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Create)
    const progress = new Progress('converting ')
    const res = await createLayer({
      source: args.source,
      type: flags.type as SourceType | undefined,
      bootstrap: flags.bootstrap,
      blobDir: flags['blob-dir'],
      parentBootstrap: flags['parent-bootstrap'],
      prefetchFiles: flags['prefetch-files'],
      ...buildOptions(flags),
      onProgress: b => progress.update(b)
    })
    progress.done()
    await this.writeJson(flags['output-json'], {
      version: '1',
      bootstrap: res.bootstrap,
      root_digest: res.rootDigest,
      blobs: res.blobs,
      blob: res.newBlob ?? null,
      stats: res.stats
    })
    if (flags['output-json'] !== '-') {
      this.print(`root digest ${res.rootDigest}`)
      this.print(
        `bootstrap ${res.bootstrap}, ${res.stats.files} files, ${res.stats.uniqueChunks}/${res.stats.chunks} chunks stored, blob ${res.newBlob ?? '(none: every chunk already existed)'}`
      )
    }
  }
}
