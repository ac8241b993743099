import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { mustRun, run } from './run.js'

/** What `tar -x` leaves on disk for one path, as the round-trip tests compare it. */
export interface NodeInfo {
  type: string
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  mtimeNs: string
  rdev: string
  sha256?: string
  target?: string
  xattrs: Record<string, string>
  /** The smallest path sharing this inode: equal for hard links. */
  linkGroup?: string
}

const TYPES: Record<number, string> = {
  0o140000: 'sock',
  0o120000: 'symlink',
  0o100000: 'file',
  0o060000: 'block',
  0o040000: 'dir',
  0o020000: 'char',
  0o010000: 'fifo'
}

/** Walks a directory with lstat, hashes contents, reads xattrs with getfattr. Paths are latin1 so any byte survives. */
export async function snapshotTree(root: string): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>()
  const inodes = new Map<string, string[]>()
  const xattrs = await readXattrs(root)
  const walk = async (rel: string): Promise<void> => {
    const abs = Buffer.from(rel === '' ? root : join(root, rel), 'latin1')
    const st = await lstat(abs, { bigint: true })
    const type = TYPES[Number(st.mode & 0o170000n)]
    const info: NodeInfo = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'dir' ? 0 : Number(st.size),
      nlink: Number(st.nlink),
      mtimeNs: st.mtimeNs.toString(),
      rdev: type === 'char' || type === 'block' ? st.rdev.toString() : '0',
      xattrs: xattrs.get(rel) ?? {}
    }
    if (type === 'file') info.sha256 = await sha256File(abs)
    if (type === 'symlink') info.target = (await readlink(abs, { encoding: 'buffer' })).toString('latin1')
    if (type !== 'dir') {
      const key = st.ino.toString()
      inodes.set(key, [...(inodes.get(key) ?? []), rel])
      ;(info as NodeInfo & { ino?: string }).ino = key
    }
    out.set(rel, info)
    if (type === 'dir') {
      const names = await readdir(abs, { encoding: 'buffer' })
      for (const n of names.sort(Buffer.compare)) await walk(rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`)
    }
  }
  await walk('')
  for (const info of out.values()) {
    const x = info as NodeInfo & { ino?: string }
    if (x.ino !== undefined) {
      x.linkGroup = [...inodes.get(x.ino)!].sort()[0]
      delete x.ino
    }
  }
  return out
}

async function sha256File(p: Buffer): Promise<string> {
  const h = createHash('sha256')
  for await (const b of createReadStream(p)) h.update(b as Buffer)
  return h.digest('hex')
}

/** `getfattr -R` over the tree; names with odd bytes come back octal-escaped and are decoded. */
async function readXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const r = await run('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root])
  if (r.code !== 0 && r.stdout === '') {
    if (r.stderr.includes('not found') || r.stderr.includes('ENOENT')) await mustRun('getfattr', ['--version'])
  }
  const out = new Map<string, Record<string, string>>()
  let cur: Record<string, string> | undefined
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unescapeOctal(line.slice(8))
      const rel = path === root ? '' : path.slice(root.length + 1)
      cur = {}
      out.set(rel, cur)
    } else if (cur !== undefined && line.includes('=')) {
      const i = line.indexOf('=')
      cur[line.slice(0, i)] = line.slice(i + 1)
    }
  }
  return out
}

function unescapeOctal(s: string): string {
  const bytes: number[] = []
  const raw = Buffer.from(s, 'utf8')
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8))
      i += 3
    } else bytes.push(raw[i])
  }
  return Buffer.from(bytes).toString('latin1')
}

export interface CompareOptions {
  /** Paths whose mtime may differ (directories implied by their children get the time of extraction). */
  ignoreMtime?: Set<string>
  /** Compare mtimes truncated to this many nanoseconds (1e6 for a millisecond-precision filesystem). */
  mtimePrecisionNs?: number
  /** Paths left out of the comparison. */
  skip?: (path: string) => boolean
}

/** Every difference between two snapshots, one line each; empty means equal. The root's own metadata is not compared. */
export function diffTrees(a: Map<string, NodeInfo>, b: Map<string, NodeInfo>, opts: CompareOptions = {}): string[] {
  const diffs: string[] = []
  const p = BigInt(opts.mtimePrecisionNs ?? 1)
  const norm = (info: NodeInfo): NodeInfo => (p === 1n ? info : { ...info, mtimeNs: ((BigInt(info.mtimeNs) / p) * p).toString() })
  for (const [path, x0] of a) {
    if (path === '' || opts.skip?.(path) === true) continue
    const x = norm(x0)
    const y0 = b.get(path)
    const y = y0 === undefined ? undefined : norm(y0)
    if (y === undefined) {
      diffs.push(`missing: ${JSON.stringify(path)}`)
      continue
    }
    for (const k of Object.keys(x) as Array<keyof NodeInfo>) {
      if (k === 'mtimeNs' && opts.ignoreMtime?.has(path) === true) continue
      if (JSON.stringify(x[k]) !== JSON.stringify(y[k]))
        diffs.push(`${JSON.stringify(path)}: ${k} ${JSON.stringify(x[k])} != ${JSON.stringify(y[k])}`)
    }
  }
  for (const path of b.keys()) if (!a.has(path) && opts.skip?.(path) !== true) diffs.push(`extra: ${JSON.stringify(path)}`)
  return diffs
}

/** GNU tar's extraction, as root, keeping owners, modes, xattrs and devices. */
export async function gnuExtract(tarPath: string, dest: string): Promise<void> {
  await mustRun('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--same-permissions', '-xf', tarPath, '-C', dest])
}

/** Paths fuse-native cannot show as stored (not valid UTF-8): left out of mount comparisons. */
export const nonUtf8 = (path: string): boolean => {
  const b = Buffer.from(path, 'latin1')
  return !Buffer.from(b.toString('utf8'), 'utf8').equals(b) || b.toString('utf8').includes('\ufffd')
}

/** Regular files under `root`, as sorted relative paths. */
export async function listFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  // Names are bytes: read them as such and keep them as latin1 strings (one char a byte); bytePath turns them back.
  for (const e of await readdir(bytePath(root, rel), { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name.toString('latin1')
    const p = rel === '' ? name : `${rel}/${name}`
    if (e.isDirectory()) out.push(...(await listFiles(root, p)))
    else if (e.isFile()) out.push(p)
  }
  return out.sort()
}

/** `root` joined with a path from listFiles (latin1, a char a byte), as the bytes the filesystem has. */
export function bytePath(root: string, rel: string): Buffer {
  return rel === '' ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), Buffer.from(rel, 'latin1')])
}
