import test from 'ava'
import { open, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeSuperblock } from '@nydusjs/rafs'
import { mountImage, mustRun, tempDir } from '@nydusjs/testkit'
import { buildImage, localConfig, type Image } from './helpers.js'

const DIRS = 3
const PER_DIR = 200

const nameOf = (d: number, i: number): string => `file-with-a-long-name-so-tables-span-pages-${d}-${String(i).padStart(4, '0')}`
const contentOf = (d: number, i: number): string => `file ${d}/${i}\n`

/** 600 small files in 3 directories: an inode table of many 4 KiB pages. */
async function manyFiles(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t)
  for (let d = 0; d < DIRS; d++) {
    await mustRun('mkdir', ['-p', join(dir, 'root', `d${d}`)])
    for (let i = 0; i < PER_DIR; i++) await writeFile(join(dir, 'root', `d${d}`, nameOf(d, i)), contentOf(d, i))
  }
  await mustRun('tar', ['-cf', join(dir, 'l.tar'), '-C', join(dir, 'root'), '.'])
  return join(dir, 'l.tar')
}

/** Every file through the mount: how many read right, and the error codes of those that did not. */
async function walk(mnt: string): Promise<{ right: number; wrong: number; errors: string[] }> {
  const out = { right: 0, wrong: 0, errors: [] as string[] }
  for (let d = 0; d < DIRS; d++) {
    const names = await readdir(join(mnt, `d${d}`)).catch((err: NodeJS.ErrnoException) => {
      out.errors.push(err.code ?? err.message)
      return [] as string[]
    })
    for (let i = 0; i < PER_DIR; i++) {
      if (!names.includes(nameOf(d, i))) continue
      try {
        const text = await readFile(join(mnt, `d${d}`, nameOf(d, i)), 'utf8')
        if (text === contentOf(d, i)) out.right++
        else out.wrong++
      } catch (err) {
        out.errors.push((err as NodeJS.ErrnoException).code ?? (err as Error).message)
      }
    }
  }
  return out
}

/** The bootstrap with one byte of its inode table's last page flipped. */
function flipped(boot: Buffer): { bytes: Buffer; at: number } {
  const inode = decodeSuperblock(boot).tables.inode
  const at = inode.offset + inode.size - 10
  const bytes = Buffer.from(boot)
  bytes[at] ^= 0x5a
  return { bytes, at }
}

const mount = async (t: Parameters<typeof tempDir>[0], img: Image) =>
  await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config: localConfig(img) })

test.serial('a bootstrap replaced under a mount changes nothing; one changed in place gives EIO, never other metadata', async t => {
  const img = await buildImage(t, await manyFiles(t))
  const original = await readFile(img.boot)
  const bad = flipped(original)
  t.true(decodeSuperblock(original).tables.inode.size > 8 * 4096, 'the inode table spans many pages')

  // Replaced (a new file renamed over the path): the mount reads the file it opened.
  const a = await mount(t, img)
  const next = join(img.dir, 'next.boot')
  await writeFile(next, bad.bytes)
  await rename(next, img.boot)
  t.deepEqual(await walk(a.mnt), { right: DIRS * PER_DIR, wrong: 0, errors: [] })
  await a.stop()

  // Changed in place after the mount checked it: the page no longer matches its digest.
  await writeFile(img.boot, original)
  const b = await mount(t, img)
  const fh = await open(img.boot, 'r+')
  try {
    await fh.write(bad.bytes.subarray(bad.at, bad.at + 1), 0, 1, bad.at)
  } finally {
    await fh.close()
  }
  const after = await walk(b.mnt)
  t.is(after.wrong, 0, 'no file reads other bytes')
  t.true(after.errors.length > 0, 'the changed page is refused')
  t.deepEqual([...new Set(after.errors)], ['EIO'])
  t.true(after.right > 0, 'files on the other pages still read')
  const named = /"err":"page \d+ of the inode table changed since the bootstrap was opened"/
  // The daemon's log reaches us through a pipe, after the failed reads.
  for (let i = 0; i < 100 && !named.test(b.logs()); i++) await sleep(50)
  t.regex(b.logs(), named)
  await b.stop()
})
