import type { ExecutionContext } from 'ava'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { forceUnmount, isMounted, reaper, repoRoot, spawnOwned, tempDir } from '@nydusjs/testkit'

/**
 * A FUSE directory (a NAS that hangs) holding `files` (name -> size): listing
 * and stat answer, every read is accepted and never answered. Torn down with
 * the test, and by the reaper if the worker dies.
 */
export async function startHangingFs(t: ExecutionContext, files: Record<string, number>): Promise<string> {
  const dir = await tempDir(t, 'hangfs-')
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const script = join(dir, 'hang.cjs')
  await writeFile(
    script,
    `const Fuse = require(${JSON.stringify(join(repoRoot, 'node_modules/fuse-native'))})
const files = ${JSON.stringify(files)}
const now = new Date()
const st = (mode, size) => ({ mtime: now, atime: now, ctime: now, size, mode, uid: 0, gid: 0, nlink: 1 })
const ops = {
  readdir: (p, cb) => cb(0, p === '/' ? Object.keys(files) : []),
  getattr: (p, cb) => p === '/' ? cb(0, st(0o40755, 4096)) : files[p.slice(1)] !== undefined ? cb(0, st(0o100644, files[p.slice(1)])) : cb(Fuse.ENOENT),
  open: (p, flags, cb) => cb(0, 42),
  release: (p, fd, cb) => cb(0),
  read: () => {}
}
const fuse = new Fuse(${JSON.stringify(mnt)}, ops, { force: true, timeout: false })
fuse.mount(err => { if (err) { console.error(err.message); process.exit(1) } else console.log('mounted') })
`
  )
  const child = spawnOwned(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] })
  reaper.mount(mnt)
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  t.teardown(async () => {
    child.kill('SIGKILL')
    await forceUnmount(mnt)
    reaper.unmount(mnt)
  })
  for (let i = 0; !(await isMounted(mnt)); i++) {
    if (child.exitCode !== null || i > 200) throw new Error(`hanging fs did not mount: ${stderr}`)
    await sleep(25)
  }
  return mnt
}
