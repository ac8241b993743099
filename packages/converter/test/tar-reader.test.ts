import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { ConverterError, TarSource, encodeHeader, END_OF_ARCHIVE, padding, normalisePath, type LayerEntry } from '../src/index.js'

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

async function entries(tar: Buffer): Promise<Array<LayerEntry & { body: Buffer }>> {
  const out = []
  for await (const e of new TarSource(once(tar), 't.tar').entries()) {
    const body = Buffer.alloc(e.size)
    await e.readInto(body, 0, e.size)
    out.push({ ...e, body })
  }
  return out
}

test('PAX: binary xattr values, nanosecond and negative mtimes, big ids and raw-byte paths survive', async t => {
  const cap = Buffer.from('01000002ff00ff00000000000000000000000000', 'hex')
  const name = Buffer.concat([Buffer.from('d/'.repeat(60)), Buffer.from([0xff, 0x80]), Buffer.from('-file')])
  const tar = Buffer.concat([
    encodeHeader({
      path: name,
      type: 'file',
      mode: 0o4755,
      uid: 3_000_000_000,
      gid: 5,
      size: 3,
      mtimeSec: -2,
      mtimeNsec: 250_000_000,
      xattrs: [[Buffer.from('security.capability'), cap]]
    }),
    Buffer.from('abc'),
    padding(3),
    END_OF_ARCHIVE
  ])
  const [e] = await entries(tar)
  t.true(e.path.equals(name))
  t.is(e.mode, 0o4755)
  t.is(e.uid, 3_000_000_000)
  t.is(e.mtimeSec, -2)
  t.is(e.mtimeNsec, 250_000_000)
  t.true(e.xattrs.get('security.capability')!.equals(cap))
  t.is(e.body.toString(), 'abc')
})

test('GNU base-256 numbers are decoded', async t => {
  const h = encodeHeader({ path: Buffer.from('big'), type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0 })
  // size field as base-256: 0x80 then 11 bytes big-endian, here 5
  h.fill(0, 124, 136)
  h[124] = 0x80
  h[135] = 5
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  const [e] = await entries(Buffer.concat([h, Buffer.from('12345'), padding(5), END_OF_ARCHIVE]))
  t.is(e.size, 5)
  t.is(e.body.toString(), '12345')
})

test('a tar without the end-of-archive blocks is accepted at an entry boundary, as GNU tar does', async t => {
  const tar = Buffer.concat([
    encodeHeader({ path: Buffer.from('a'), type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, mtimeSec: 0, mtimeNsec: 0 }),
    Buffer.from('x'),
    padding(1)
  ])
  t.is((await entries(tar)).length, 1)
})

test('a malformed PAX record is a typed error', async t => {
  const body = Buffer.from('99 path=x\n')
  const xh = encodeHeader({
    path: Buffer.from('PaxHeaders/x'),
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtimeSec: 0,
    mtimeNsec: 0
  })
  xh[156] = 0x78
  xh.fill(0x20, 148, 156)
  let sum = 0
  for (const b of xh) sum += b
  xh.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  const tar = Buffer.concat([xh, body, padding(body.length), END_OF_ARCHIVE])
  const err = await t.throwsAsync(entries(tar), { instanceOf: NydusError })
  t.is(err?.code, 'ERR_TAR_BAD_HEADER')
})

test('normalisePath strips / and ./, folds .. inside the tree, refuses climbing out', t => {
  const n = (s: string): string =>
    normalisePath(Buffer.from(s), 'x')
      .map(p => p.toString())
      .join('/')
  t.is(n('/a/./b//c/'), 'a/b/c')
  t.is(n('./a/b/../c'), 'a/c')
  t.is(n('./'), '')
  t.throws(() => n('../a'), { instanceOf: ConverterError, message: /climbs above the root/ })
  t.throws(() => n('a/../../b'), { instanceOf: ConverterError })
})
