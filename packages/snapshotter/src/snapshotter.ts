import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { FORMAT_VERSION } from '@nydusjs/rafs'
import { join } from 'node:path'
import { SnapshotterError } from './errors.js'
import { compileFilters } from './filters.js'
import { SnapshotStore, type Kind, type SnapshotRecord } from './store.js'
import type { ImageMount, NydusdManager } from './nydusd-manager.js'
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

/** The labels containerd's remote snapshotter protocol and nydus's converter put on layers. */
export const LABEL_REF = 'containerd.io/snapshot.ref'
export const LABEL_NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob'
export const LABEL_IMAGE_REF = 'containerd.io/snapshot/remote/stargz.reference'
/** What CRI puts on every layer's Prepare when disable_snapshot_annotations = false. */
export const LABEL_CRI_IMAGE_REF = 'containerd.io/snapshot/cri.image-ref'
export const LABEL_NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap'

export interface SnapshotterOptions {
  /** Kata's mount: type fuse.nydus-overlayfs with the image in an `extraoption=` (nydus-snapshotter's enable_nydus_overlayfs). */
  nydusOverlayfs?: boolean
}

/** Label bytes allowed per key/value pair, as containerd checks them. */
const MAX_LABEL_BYTES = 4096

/**
 * containerd's snapshotter semantics on overlayfs (the behaviour of its own
 * overlayfs snapshotter): an active snapshot is an upper directory over its
 * committed parents; a view is read-only; committing freezes an active one
 * under a new name. Directories are `ROOT/snapshots/<id>/{fs,work}`.
 */
export class OverlaySnapshotter {
  readonly store: SnapshotStore
  private readonly dir: string

  private constructor(
    readonly root: string,
    private readonly nydusd?: NydusdManager,
    private readonly o: SnapshotterOptions = {}
  ) {
    this.dir = join(root, 'snapshots')
    this.store = new SnapshotStore(join(root, 'metadata'))
  }

  /** Without `nydusd`, converted images are refused at mount (nothing can serve them). */
  static async open(root: string, nydusd?: NydusdManager, o: SnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    await mkdir(join(root, 'snapshots'), { recursive: true })
    return new OverlaySnapshotter(root, nydusd, o)
  }

  /**
   * After a (re)start: the images whose daemons were started before are
   * reconciled: a daemon still running is kept, one that died is restarted.
   */
  async reconcile(): Promise<void> {
    if (this.nydusd === undefined) return
    for (const [, rec] of this.store.all()) {
      if (rec.labels[LABEL_NYDUS_BOOTSTRAP] !== 'true' || !existsSync(join(this.root, 'daemons', `${rec.id}.pid`))) continue
      const image = this.imageOf(rec)
      if (image !== undefined) this.nydusd.adopt(String(rec.id), join(this.path(rec.id), 'fs', 'image', 'image.boot'), image)
    }
    await this.nydusd.recover()
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
    let remote: { boot: SnapshotRecord; mount: ImageMount } | undefined
    for (let p = rec.parent; p !== ''; ) {
      const r = this.must(p)
      if (r.labels[LABEL_NYDUS_BOOTSTRAP] === 'true') {
        // A converted image: its bootstrap and everything below are served by its nydusd, lazily.
        remote = { boot: r, mount: await this.remoteLower(r) }
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
      if (remote !== undefined && this.o.nydusOverlayfs === true)
        return [
          { type: 'fuse.nydus-overlayfs', source: 'overlay', options: [...options, await this.extraOption(remote.boot, remote.mount)] }
        ]
      return [{ type: 'overlay', source: 'overlay', options }]
    }
    if (lowers.length === 0) return [{ type: 'bind', source: own, options: ['ro', 'rbind'] }]
    if (lowers.length === 1) return [{ type: 'bind', source: lowers[0], options: ['ro', 'rbind'] }]
    return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }]
  }

  /** The image reference the layers were pulled with (ctr-remote's label or CRI's). */
  private imageOf(boot: SnapshotRecord): string | undefined {
    const ref = (r: SnapshotRecord): string | undefined => r.labels[LABEL_IMAGE_REF] ?? r.labels[LABEL_CRI_IMAGE_REF]
    let image = ref(boot)
    for (let p = boot.parent; image === undefined && p !== ''; ) {
      const r = this.must(p)
      image = ref(r)
      p = r.parent
    }
    return image
  }

  /** What Kata's agent needs to run the image's nydusd in the guest, as nydus-snapshotter encodes it. */
  private async extraOption(boot: SnapshotRecord, m: ImageMount): Promise<string> {
    const extra = {
      source: join(this.path(boot.id), 'fs', 'image', 'image.boot'),
      config: await readFile(m.config, 'utf8'),
      snapshotdir: this.path(boot.id),
      fs_version: `rafs-js-v${FORMAT_VERSION}`
    }
    return `extraoption=${Buffer.from(JSON.stringify(extra)).toString('base64')}`
  }

  /** The image's nydusd mount, the daemon started if it is not running. */
  private async remoteLower(boot: SnapshotRecord): Promise<ImageMount> {
    const image = this.imageOf(boot)
    if (this.nydusd === undefined) throw new SnapshotterError('ERR_CONFIG', 'a converted image needs nydusd, and none is configured')
    if (image === undefined) {
      throw new SnapshotterError(
        'ERR_BAD_ARGUMENT',
        "the converted image's layers carry no image reference (pull it with ctr-remote rpull or through CRI)"
      )
    }
    return await this.nydusd.ensure(String(boot.id), join(this.path(boot.id), 'fs', 'image', 'image.boot'), image)
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

function checkKey(key: string): void {
  if (key === '' || key.length > 4096 || key.includes('\0'))
    throw new SnapshotterError('ERR_BAD_ARGUMENT', `snapshot key ${JSON.stringify(key.slice(0, 80))} is empty, too long or has a NUL byte`)
}

function checkLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES)
      throw new SnapshotterError(
        'ERR_BAD_ARGUMENT',
        `label ${JSON.stringify(k.slice(0, 80))}: key and value exceed ${MAX_LABEL_BYTES} bytes`
      )
  }
}
