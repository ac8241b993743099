import { existsSync } from 'node:fs'
import { mkdir, readdir, rm } from 'node:fs/promises'
import { pino, type Logger } from 'pino'
import { join } from 'node:path'
import { SnapshotterError } from './errors.js'
import { checkKey, checkLabels, LABEL_NYDUS_BLOB, LABEL_NYDUS_BOOTSTRAP, LABEL_REF } from './labels.js'
import { compileFilters } from './filters.js'
import { SnapshotStore, type Kind, type SnapshotRecord } from './store.js'
import type { NydusdManager } from './nydusd-manager.js'
import { RemoteLayers, type RemoteLower } from './remote-layers.js'
import { diskUsage } from './usage.js'

export interface Mount {
  type: string
  source: string
  target?: string
  options: string[]
}

export interface Info {
  name: string
  parent: string
  kind: Kind
  created: number
  updated: number
  labels: Record<string, string>
}

export interface SnapshotterOptions {
  /** Kata's mount: type fuse.nydus-overlayfs with the image in an `extraoption=` (nydus-snapshotter's enable_nydus_overlayfs). */
  nydusOverlayfs?: boolean
  /** A converted image whose lazy mount fails (not for its own fault) is copied natively instead (default on). */
  nativeFallback?: boolean
  log?: Logger
}

/**
 * containerd's snapshotter semantics on overlayfs (the behaviour of its own
 * overlayfs snapshotter): an active snapshot is an upper directory over its
 * committed parents; a view is read-only; committing freezes an active one
 * under a new name. Directories are `ROOT/snapshots/<id>/{fs,work}`.
 */
export class OverlaySnapshotter {
  readonly store: SnapshotStore
  private readonly dir: string
  private readonly remote: RemoteLayers

  private constructor(
    readonly root: string,
    private readonly nydusd?: NydusdManager,
    private readonly o: SnapshotterOptions = {}
  ) {
    this.dir = join(root, 'snapshots')
    this.store = new SnapshotStore(join(root, 'metadata'))
    const log = o.log ?? pino({ level: 'silent' })
    this.remote = new RemoteLayers(
      nydusd,
      { nativeFallback: o.nativeFallback ?? true, log },
      id => this.path(id),
      key => this.must(key)
    )
  }

  /** Without `nydusd`, converted images are refused at mount (nothing can serve them). */
  static async open(root: string, nydusd?: NydusdManager, o: SnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    await mkdir(join(root, 'snapshots'), { recursive: true })
    return new OverlaySnapshotter(root, nydusd, o)
  }

  /**
   * After a (re)start: the images whose daemons were started before are
   * reconciled: a daemon still running is kept, one that died is restarted
   * (unless `restartDead` is false: recover_policy "none").
   */
  async reconcile(restartDead = true): Promise<void> {
    if (this.nydusd === undefined) return
    for (const [, rec] of this.store.all()) {
      if (rec.labels[LABEL_NYDUS_BOOTSTRAP] !== 'true' || !existsSync(join(this.root, 'daemons', `${rec.id}.pid`))) continue
      const image = this.remote.imageOf(rec)
      if (image !== undefined) this.nydusd.adopt(String(rec.id), join(this.path(rec.id), 'fs', 'image', 'image.boot'), image)
    }
    if (restartDead) await this.nydusd.recover()
  }

  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    const ref = labels[LABEL_REF]
    if (labels[LABEL_NYDUS_BLOB] === 'true' && ref !== undefined) {
      // A data blob of a converted image is never unpacked: it is committed here, empty, under its
      // chain id, and containerd is told it exists (the remote snapshotter protocol), so it skips the blob.
      await this.commitRemote(ref, parent, labels)
      throw new SnapshotterError(
        'ERR_SNAPSHOT_EXISTS',
        `target snapshot ${JSON.stringify(ref)} already exists (nydus blob layer, read lazily)`
      )
    }
    return await this.create('ACTIVE', key, parent, labels)
  }

  /** A committed snapshot with no content of its own, unless one of that name exists already. */
  private async commitRemote(name: string, parent: string, labels: Record<string, string>): Promise<void> {
    checkKey(name)
    checkLabels(labels)
    const now = Date.now()
    const rec = await this.store.tx(t => {
      if (t.get(name) !== undefined) return undefined
      if (parent !== '' && t.get(parent)?.kind !== 'COMMITTED')
        throw new SnapshotterError('ERR_SNAPSHOT_NOT_FOUND', `parent snapshot ${parent} is not a committed snapshot`)
      const r: SnapshotRecord = { id: t.nextId(), kind: 'COMMITTED', parent, labels, created: now, updated: now }
      t.put(name, r)
      return r
    })
    if (rec !== undefined) await mkdir(join(this.path(rec.id), 'fs'), { recursive: true, mode: 0o755 })
  }

  async view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return await this.create('VIEW', key, parent, labels)
  }

  /** The mounts of an active snapshot or a view; the same answer however often it is asked. */
  async mounts(key: string): Promise<Mount[]> {
    const rec = this.must(key)
    if (rec.kind === 'COMMITTED')
      throw new SnapshotterError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${key} is committed: it has no mounts (prepare a child of it)`)
    return await this.mountsOf(rec)
  }

  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    checkKey(name)
    checkLabels(labels)
    await this.store.tx(t => {
      const rec = t.get(key)
      if (rec === undefined) throw notFound(key)
      if (rec.kind !== 'ACTIVE')
        throw new SnapshotterError(
          'ERR_SNAPSHOT_IN_USE',
          `snapshot ${key} is ${rec.kind.toLowerCase()}: only an active snapshot can be committed`
        )
      if (t.get(name) !== undefined) throw new SnapshotterError('ERR_SNAPSHOT_EXISTS', `snapshot ${name} already exists`)
      t.remove(key)
      t.put(name, { ...rec, kind: 'COMMITTED', labels: { ...rec.labels, ...labels }, updated: Date.now() })
    })
  }

  async remove(key: string): Promise<void> {
    const rec = await this.store.tx(t => {
      const r = t.get(key)
      if (r === undefined) throw notFound(key)
      const kids = t.children(key)
      if (kids.length > 0)
        throw new SnapshotterError('ERR_SNAPSHOT_IN_USE', `snapshot ${key} has ${kids.length} child snapshot(s): remove them first`)
      t.remove(key)
      return r
    })
    // A converted image's bootstrap going away takes its nydusd and mount with it.
    if (rec.labels[LABEL_NYDUS_BOOTSTRAP] === 'true') await this.nydusd?.forget(String(rec.id))
    // After the record: a crash in between leaves a directory that Cleanup removes.
    await rm(this.path(rec.id), { recursive: true, force: true })
  }

  stat(key: string): Info {
    return toInfo(key, this.must(key))
  }

  /** Labels are the only mutable field; `paths` as containerd's field mask: `labels` or `labels.KEY`. */
  async update(key: string, labels: Record<string, string>, paths: readonly string[]): Promise<Info> {
    checkLabels(labels)
    return await this.store.tx(t => {
      const rec = t.get(key)
      if (rec === undefined) throw notFound(key)
      let next: Record<string, string> = { ...rec.labels }
      if (paths.length === 0 || paths.includes('labels')) next = { ...labels }
      for (const p of paths) {
        if (p === 'labels') continue
        if (!p.startsWith('labels.'))
          throw new SnapshotterError('ERR_BAD_ARGUMENT', `cannot update ${JSON.stringify(p)} of snapshot ${key}: only labels are mutable`)
        const k = p.slice('labels.'.length)
        if (labels[k] === undefined) delete next[k]
        else next[k] = labels[k]
      }
      const out = { ...rec, labels: next, updated: Date.now() }
      t.put(key, out)
      return toInfo(key, out)
    })
  }

  list(filters: readonly string[]): Info[] {
    const match = compileFilters(filters)
    const out: Info[] = []
    for (const [key, rec] of this.store.all()) {
      const info = toInfo(key, rec)
      if (match(info)) out.push(info)
    }
    return out
  }

  /** Bytes and inodes of the snapshot's own layer (its upper directory). */
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return await diskUsage(join(this.path(this.must(key).id), 'fs'))
  }

  /** Removes directories that no record names (left by a crash between a record and its directory). */
  async cleanup(): Promise<string[]> {
    const live = new Set<string>()
    for (const [, rec] of this.store.all()) live.add(String(rec.id))
    const gone: string[] = []
    for (const d of await readdir(this.dir)) {
      if (live.has(d)) continue
      await rm(join(this.dir, d), { recursive: true, force: true })
      gone.push(d)
    }
    return gone
  }

  async close(): Promise<void> {
    await this.store.close()
  }

  private async create(kind: Kind, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    checkKey(key)
    checkLabels(labels)
    const now = Date.now()
    const rec = await this.store.tx(t => {
      if (t.get(key) !== undefined) throw new SnapshotterError('ERR_SNAPSHOT_EXISTS', `snapshot ${key} already exists`)
      if (parent !== '') {
        const p = t.get(parent)
        if (p === undefined) throw new SnapshotterError('ERR_SNAPSHOT_NOT_FOUND', `parent snapshot ${parent} does not exist`)
        if (p.kind !== 'COMMITTED')
          throw new SnapshotterError('ERR_BAD_ARGUMENT', `parent snapshot ${parent} is ${p.kind.toLowerCase()}, not committed`)
      }
      const r: SnapshotRecord = { id: t.nextId(), kind, parent, labels, created: now, updated: now }
      t.put(key, r)
      return r
    })
    try {
      await mkdir(join(this.path(rec.id), 'fs'), { recursive: true, mode: 0o755 })
      if (kind === 'ACTIVE') await mkdir(join(this.path(rec.id), 'work'), { recursive: true, mode: 0o711 })
    } catch (err) {
      await this.store.tx(t => t.remove(key))
      throw err
    }
    return await this.mountsOf(rec)
  }

  private async mountsOf(rec: SnapshotRecord): Promise<Mount[]> {
    const lowers: string[] = []
    let remote: { boot: SnapshotRecord; mount: RemoteLower } | undefined
    for (let p = rec.parent; p !== ''; ) {
      const r = this.must(p)
      if (r.labels[LABEL_NYDUS_BOOTSTRAP] === 'true') {
        // A converted image: its bootstrap and everything below are served by its nydusd, lazily.
        remote = { boot: r, mount: await this.remote.lower(r) }
        lowers.push(remote.mount.mountpoint)
        break
      }
      lowers.push(join(this.path(r.id), 'fs'))
      p = r.parent
    }
    const own = join(this.path(rec.id), 'fs')
    if (rec.kind === 'ACTIVE') {
      if (lowers.length === 0) return [{ type: 'bind', source: own, options: ['rw', 'rbind'] }]
      const options = [`workdir=${join(this.path(rec.id), 'work')}`, `upperdir=${own}`, `lowerdir=${lowers.join(':')}`]
      if (remote?.mount.config !== undefined && this.o.nydusOverlayfs === true) {
        const extra = await this.remote.extraOption(remote.boot, remote.mount.config)
        return [{ type: 'fuse.nydus-overlayfs', source: 'overlay', options: [...options, extra] }]
      }
      return [{ type: 'overlay', source: 'overlay', options }]
    }
    if (lowers.length === 0) return [{ type: 'bind', source: own, options: ['ro', 'rbind'] }]
    if (lowers.length === 1) return [{ type: 'bind', source: lowers[0], options: ['ro', 'rbind'] }]
    return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }]
  }

  private must(key: string): SnapshotRecord {
    const rec = this.store.get(key)
    if (rec === undefined) throw notFound(key)
    return rec
  }

  private path(id: number): string {
    return join(this.dir, String(id))
  }
}

const notFound = (key: string): SnapshotterError => new SnapshotterError('ERR_SNAPSHOT_NOT_FOUND', `snapshot ${key} does not exist`)

const toInfo = (name: string, r: SnapshotRecord): Info => ({
  name,
  parent: r.parent,
  kind: r.kind,
  created: r.created,
  updated: r.updated,
  labels: r.labels
})
