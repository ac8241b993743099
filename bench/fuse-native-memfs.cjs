#!/usr/bin/env node
// The reference ceiling for bench:read: fuse-native serving a directory tree
// from memory (getattr, readdir, readlink, read; no fetching, no checking),
// with nydusd's mount options. Whatever nydusd does beyond this is its own cost.
// Usage: node bench/fuse-native-memfs.cjs SRC_DIR MOUNTPOINT
const Fuse = require('fuse-native')
const fs = require('node:fs')
const path = require('node:path')

const [src, mnt] = process.argv.slice(2)
const nodes = new Map()
function load(rel) {
  const full = path.join(src, rel)
  const st = fs.lstatSync(full)
  const n = {
    st: {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      nlink: st.nlink,
      ino: st.ino,
      mtime: st.mtime,
      atime: st.mtime,
      ctime: st.mtime,
      blksize: 4096,
      blocks: st.blocks
    }
  }
  nodes.set('/' + rel, n)
  if (st.isDirectory()) {
    n.kids = fs.readdirSync(full)
    for (const k of n.kids) load(rel === '' ? k : `${rel}/${k}`)
  } else if (st.isSymbolicLink()) {
    n.link = fs.readlinkSync(full)
  } else if (st.isFile()) {
    n.data = fs.readFileSync(full)
  }
}
load('')
// Loading filled the page cache; the other readers start cold, so this one does too.
if (process.env.MEMFS_DROP_CACHES === '1') {
  require('node:child_process').execFileSync('sync')
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
}
const ops = {
  getattr: (p, cb) => {
    const n = nodes.get(p)
    n ? cb(0, n.st) : cb(Fuse.ENOENT)
  },
  readdir: (p, cb) => {
    const n = nodes.get(p)
    n?.kids ? cb(0, ['.', '..', ...n.kids]) : cb(Fuse.ENOENT)
  },
  readlink: (p, cb) => {
    const n = nodes.get(p)
    n?.link ? cb(0, n.link) : cb(Fuse.EINVAL)
  },
  read: (p, _fd, buf, len, pos, cb) => {
    const n = nodes.get(p)
    if (!n?.data) return cb(Fuse.EIO)
    cb(pos >= n.data.length ? 0 : n.data.copy(buf, 0, pos, Math.min(n.data.length, pos + len)))
  }
}
const fuse = new Fuse(mnt, ops, {
  kernelCache: true,
  attrTimeout: 3600,
  entryTimeout: 3600,
  maxRead: 1 << 20,
  timeout: false,
  force: false,
  mkdir: false
})
fuse.mount(err => {
  if (err) {
    console.error(err.message)
    process.exit(1)
  }
})
const stop = () => fuse.unmount(() => process.exit(0))
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
