import { open, type Database, type RootDatabase } from 'lmdb'

export type Kind = 'VIEW' | 'ACTIVE' | 'COMMITTED'

/** One snapshot as the metadata store keeps it. Keys are opaque (containerd sends `<ns>/<seq>/<key>`). */
export interface SnapshotRecord {
  /** Names its directory under the root: stable across a commit, which renames the key. */
  id: number
  kind: Kind
  /** The parent's key, or '' for none. */
  parent: string
  labels: Record<string, string>
  /** Milliseconds since the epoch. */
  created: number
  updated: number
}

/**
 * The snapshot metadata in LMDB: every change is one transaction, so a crash
 * at any point leaves the store as it was before or after the change, never
 * between (containerd's own snapshotters use bbolt the same way). Directories
 * are created before and removed after their records; Cleanup removes what no
 * record names.
 */
export class SnapshotStore {
  private readonly root: RootDatabase
  private readonly snapshots: Database<SnapshotRecord, string>
  private readonly meta: Database<number, string>

  constructor(path: string) {
    this.root = open({ path, compression: false })
    this.snapshots = this.root.openDB<SnapshotRecord, string>({ name: 'snapshots' })
    this.meta = this.root.openDB<number, string>({ name: 'meta' })
  }

  get(key: string): SnapshotRecord | undefined {
    return this.snapshots.get(key)
  }

  /** Every snapshot, in key order. */
  *all(): Generator<[string, SnapshotRecord]> {
    for (const { key, value } of this.snapshots.getRange()) yield [key, value]
  }

  children(key: string): string[] {
    const out: string[] = []
    for (const [k, v] of this.all()) if (v.parent === key) out.push(k)
    return out
  }

  /** Runs `fn` in one write transaction; what it returns is the transaction's result. */
  async tx<T>(fn: (t: StoreTx) => T): Promise<T> {
    return await this.root.transaction(() =>
      fn({
        get: k => this.snapshots.get(k),
        children: k => this.children(k),
        put: (k, v) => {
          this.snapshots.putSync(k, v)
        },
        remove: k => {
          this.snapshots.removeSync(k)
        },
        nextId: () => {
          const id = (this.meta.get('lastId') ?? 0) + 1
          this.meta.putSync('lastId', id)
          return id
        }
      })
    )
  }

  async close(): Promise<void> {
    await this.root.close()
  }
}

export interface StoreTx {
  get: (key: string) => SnapshotRecord | undefined
  children: (key: string) => string[]
  put: (key: string, v: SnapshotRecord) => void
  remove: (key: string) => void
  nextId: () => number
}
