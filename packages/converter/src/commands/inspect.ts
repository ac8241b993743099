import { Args, Flags } from '@oclif/core'
import { isDir } from '@nydusjs/rafs'
import { loadBootstrap } from '../image.js'
import { inodeInfo, listing, lookupOrFail, superblockInfo } from '../report.js'
import { statBootstraps } from '../report.js'
import { BaseCommand } from './base.js'

export default class Inspect extends BaseCommand {
  static summary = 'Show a bootstrap: superblock and stats, or one path (its metadata, chunks or directory listing)'
  static examples = [
    '<%= config.bin %> inspect --bootstrap image.boot',
    '<%= config.bin %> inspect --bootstrap image.boot /etc',
    '<%= config.bin %> inspect --bootstrap image.boot --json /bin/busybox'
  ]
  static args = { path: Args.string({ description: 'a path inside the image' }) }
  static flags = {
    bootstrap: Flags.string({ char: 'B', description: 'bootstrap to inspect', required: true }),
    json: Flags.boolean({ description: 'print JSON' })
  }

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Inspect)
    const r = await loadBootstrap(flags.bootstrap)
    if (args.path === undefined) {
      const info = { ...superblockInfo(r), stats: statBootstraps([{ path: flags.bootstrap, r }]).images[0] }
      if (flags.json) this.print(JSON.stringify(info, null, 2))
      else
        this.print(
          Object.entries(info)
            .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
            .join('\n')
        )
      return
    }
    const rec = lookupOrFail(r, args.path)
    const info = inodeInfo(r, rec)
    if (flags.json) {
      this.print(JSON.stringify(info, null, 2))
      return
    }
    if (isDir(rec.mode)) {
      this.print(listing(r, rec).join('\n'))
      return
    }
    this.print(
      Object.entries(info)
        .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
        .join('\n')
    )
  }
}
