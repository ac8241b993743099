import type { ExecutionContext } from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mustRun, spawnOwned, tempDir } from '@nydusjs/testkit'

export const FILES = 96

/** 96 files of 256 KiB (random: they do not compress), as a tar, with their sha256. */
export async function layer(t: Parameters<typeof tempDir>[0]): Promise<{ tar: string; want: Map<string, string> }> {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'root', 'data'), { recursive: true })
  const want = new Map<string, string>()
  for (let i = 0; i < FILES; i++) {
    const name = `f${String(i).padStart(2, '0')}.bin`
    const data = randomBytes(256 * 1024)
    await writeFile(join(dir, 'root', 'data', name), data)
    want.set(name, createHash('sha256').update(data).digest('hex'))
  }
  await mustRun('tar', ['-cf', join(dir, 'layer.tar'), '-C', join(dir, 'root'), '.'])
  return { tar: join(dir, 'layer.tar'), want }
}

/** Reads every file once, slowly, in name order: a line per file (its hash, or the error). */
const READER = `
const { readFileSync, readdirSync } = require('node:fs')
const { createHash } = require('node:crypto')
const dir = process.argv[1] + '/data'
const names = readdirSync(dir).sort()
let i = 0
const next = () => {
  if (i === names.length) return
  const n = names[i++]
  try { console.log(n, createHash('sha256').update(readFileSync(dir + '/' + n)).digest('hex')) }
  catch (e) { console.log(n, 'ERROR', e.code) }
  setTimeout(next, 30)
}
next()
`

/** READER on the mount; settles with its output when it is done. */
export function startReader(mnt: string): Promise<string> {
  const reader = spawnOwned(process.execPath, ['-e', READER, mnt], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  reader.stdout!.on('data', (b: Buffer) => {
    out += b.toString()
  })
  return new Promise(resolve => reader.once('exit', () => resolve(out)))
}

/** Every file read once, each with its right hash. */
export function allRight(t: ExecutionContext, out: string, want: Map<string, string>): void {
  const lines = out.trim().split('\n')
  t.is(lines.length, FILES, out)
  for (const l of lines) {
    const [name, hash, code] = l.split(' ')
    t.is(hash ?? '', want.get(name ?? '') ?? 'unknown file', `${name}: ${code ?? hash}`)
  }
}
