import { randomBytes } from 'node:crypto'
import { open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** Files written under temporary names and renamed into place only when everything succeeded. */
export class Staged {
  private readonly moves: Array<[string, string]> = []

  /** Writes `data` durably to a temporary name next to `path`. */
  async write(path: string, data: Buffer): Promise<void> {
    const tmp = tmpName(path)
    this.moves.push([tmp, path])
    const fh = await open(tmp, 'wx')
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  add(tmp: string, final: string): void {
    this.moves.push([tmp, final])
  }

  /** Renames in order; the bootstrap goes last so a reader never sees it before its blobs. */
  async commit(): Promise<void> {
    for (const [tmp, final] of this.moves) await rename(tmp, final)
    this.moves.length = 0
  }

  async abort(): Promise<void> {
    await Promise.all(this.moves.map(async ([tmp]) => await rm(tmp, { force: true })))
    this.moves.length = 0
  }
}

export function tmpName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}
