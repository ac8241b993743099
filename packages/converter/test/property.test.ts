import test from 'ava'
import fc from 'fast-check'
import { deepStrictEqual } from 'node:assert'
import { readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeBootstrap, loadDigester, mergeLayers, BootstrapReader, readTree } from '@nydusjs/rafs'
import { tempDir } from '@nydusjs/testkit'
import { TarSource, buildLayer, encodeHeader, END_OF_ARCHIVE, padding, unpackToTar, type EntryType } from '../src/index.js'

/** One entry of a generated layer; whiteouts are files named .wh.X. */
interface Op {
  path: string
  type: 'file' | 'dir' | 'symlink'
  content: string
  mode: number
}
type Model = Map<string, { type: string; content: string; mode: number }>

const NAMES = ['a', 'b', 'c']
const opArb = fc.record({
  dir: fc.array(fc.constantFrom(...NAMES), { maxLength: 2 }),
  name: fc.oneof(fc.constantFrom(...NAMES), fc.constantFrom('.wh.a', '.wh.b', '.wh.c', '.wh..wh..opq')),
  type: fc.constantFrom('file', 'dir', 'symlink' as const),
  content: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('x'.repeat(5000), 'y'.repeat(9000))),
  mode: fc.constantFrom(0o644, 0o600, 0o755)
})

/** A consistent layer: parents are created as dirs before children; a path is a dir or not, never both. */
function toLayer(raw: Array<{ dir: string[]; name: string; type: 'file' | 'dir' | 'symlink'; content: string; mode: number }>): Op[] {
  const kinds = new Map<string, string>()
  const ops: Op[] = []
  for (const r of raw) {
    const isWh = r.name.startsWith('.wh.')
    const parts = [...r.dir]
    let ok = true
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/')
      const k = kinds.get(p)
      if (k !== undefined && k !== 'dir') {
        ok = false
        break
      }
      if (k === undefined) {
        kinds.set(p, 'dir')
        ops.push({ path: p, type: 'dir', content: '', mode: 0o755 })
      }
    }
    const path = [...parts, r.name].join('/')
    if (!ok || kinds.has(path)) continue
    const type = isWh ? 'file' : r.type
    kinds.set(path, type)
    ops.push({ path, type, content: isWh ? '' : r.content, mode: r.mode })
  }
  return ops
}

function tarOf(ops: Op[]): Buffer {
  const parts: Buffer[] = []
  for (const o of ops) {
    const body = Buffer.from(o.type === 'file' ? o.content : '')
    parts.push(
      encodeHeader({
        path: Buffer.from(o.path),
        type: o.type as EntryType,
        mode: o.mode,
        uid: 0,
        gid: 0,
        size: body.length,
        mtimeSec: 1,
        mtimeNsec: 0,
        linkname: o.type === 'symlink' ? Buffer.from(o.content) : undefined
      }),
      body,
      padding(body.length)
    )
  }
  parts.push(END_OF_ARCHIVE)
  return Buffer.concat(parts)
}

/** The reference: overlayfs semantics written the plain way. */
function applyModel(state: Model, ops: Op[]): void {
  const under = (p: string): string[] => [...state.keys()].filter(k => k.startsWith(p + '/'))
  for (const o of ops) {
    const i = o.path.lastIndexOf('/')
    const dir = i === -1 ? '' : o.path.slice(0, i)
    const name = o.path.slice(i + 1)
    if (name === '.wh..wh..opq') for (const k of dir === '' ? [...state.keys()] : under(dir)) state.delete(k)
    else if (name.startsWith('.wh.')) {
      const target = (dir === '' ? '' : dir + '/') + name.slice(4)
      state.delete(target)
      for (const k of under(target)) state.delete(k)
    }
  }
  for (const o of ops) {
    if (o.path.split('/').pop()!.startsWith('.wh.')) continue
    const prev = state.get(o.path)
    if (!(prev?.type === 'dir' && o.type === 'dir')) for (const k of under(o.path)) state.delete(k)
    state.set(o.path, { type: o.type, content: o.type === 'dir' ? '' : o.content, mode: o.mode })
  }
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

test('build, merge, unpack equals the overlayfs model', async t => {
  const dir = await tempDir(t)
  const sha256 = await loadDigester('sha256')
  let n = 0
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(opArb, { maxLength: 12 }), { minLength: 1, maxLength: 3 }), async rawLayers => {
      const layers = rawLayers.map(toLayer)
      const blobDir = join(dir, `blobs-${n++}`)
      const trees = []
      for (const ops of layers) {
        const build = await buildLayer(new TarSource(once(tarOf(ops)), 'gen.tar'), { blobDir, chunkSize: 0x1000, workers: 1 })
        if (build.blob !== undefined) await rename(build.blob.tmpPath, build.blob.finalPath)
        trees.push(build.tree)
      }
      // Through the encoded bootstrap, as merge on disk would do.
      const merged = mergeLayers(trees.map(tr => readTree(BootstrapReader.open(encodeBootstrap(tr, sha256).bootstrap))))
      const out = join(dir, `out-${n}.tar`)
      await unpackToTar(merged, blobDir, sha256, out)
      const got: Model = new Map()
      for await (const e of new TarSource(once(await readFile(out)), out).entries()) {
        const body = Buffer.alloc(e.size)
        await e.readInto(body, 0, e.size)
        const p = e.path.toString().replace(/\/$/, '')
        if (p === '.') continue
        got.set(p, { type: e.type, content: e.type === 'symlink' ? e.linkname.toString() : body.toString(), mode: e.mode })
      }
      const want: Model = new Map()
      for (const ops of layers) applyModel(want, ops)
      deepStrictEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()))
    }),
    { numRuns: 60, seed: 1234 }
  )
  t.is(n, 60)
})
