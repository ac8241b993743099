import { Flags } from '@oclif/core'
import { loadBootstrap } from '../image.js'
import { statBootstraps } from '../report.js'
import { BaseCommand } from './base.js'

export default class Stat extends BaseCommand {
  static summary = 'Sizes, counts, and the dedup and compression ratios of one or more bootstraps'
  static examples = ['<%= config.bin %> stat --bootstrap a.boot --bootstrap b.boot']
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'bootstrap (repeatable)', required: true, multiple: true }),
    json: Flags.boolean({ description: 'print JSON' })
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Stat)
    const readers = []
    for (const path of flags.bootstrap) readers.push({ path, r: await loadBootstrap(path) })
    const report = statBootstraps(readers)
    if (flags.json) {
      this.print(JSON.stringify(report, null, 2))
      return
    }
    for (const s of report.images) {
      this.print(
        `${s.bootstrap}: ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${s.others} others; ${s.fileBytes} file bytes; ${s.chunkRefs} chunk refs, ${s.uniqueChunks} chunks (${s.uniqueBytes} bytes, ${s.compressedBytes} compressed); ${s.blobs} blobs`
      )
    }
    const t = report.total
    this.print(
      `total: ${t.fileBytes} file bytes, ${t.uniqueChunks} unique chunks, ${t.uniqueBytes} unique bytes, ${t.compressedBytes} compressed; dedup ratio ${t.dedupRatio}, compression ratio ${t.compressionRatio}`
    )
  }
}
