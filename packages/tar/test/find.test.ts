import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { END_OF_ARCHIVE, encodeHeader, findTarFile, padding, TarSource } from '../src/index.js'

const file = (path: string, body: Buffer): Buffer =>
  Buffer.concat([
    encodeHeader({ path: Buffer.from(path), type: 'file', mode: 0o644, uid: 0, gid: 0, size: body.length, mtimeSec: 0, mtimeNsec: 0 }),
    body,
    padding(body.length)
  ])

test('findTarFile reads what the writer wrote, long (pax) names included; the streaming reader agrees', async t => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(120)}`
  const tar = Buffer.concat([
    file('a.txt', Buffer.from('aaa')),
    file(long, Buffer.from('long body')),
    file('./image/image.boot', Buffer.alloc(1000, 7)),
    END_OF_ARCHIVE
  ])
  t.is(findTarFile(tar, 'a.txt', 't')?.toString(), 'aaa')
  t.is(findTarFile(tar, long, 't')?.toString(), 'long body')
  t.true(findTarFile(tar, 'image/image.boot', 't')?.equals(Buffer.alloc(1000, 7)))
  t.is(findTarFile(tar, 'missing', 't'), undefined)
  const names: string[] = []
  for await (const e of new TarSource(
    (async function* () {
      yield tar
    })(),
    't'
  ).entries())
    names.push(e.path.toString())
  t.deepEqual(names, ['a.txt', long, './image/image.boot'])
})

test('findTarFile refuses a bad checksum, a truncated body and a garbage size by code, naming where', t => {
  const tar = Buffer.concat([file('a.txt', Buffer.alloc(2000, 1)), END_OF_ARCHIVE])
  const flipped = Buffer.from(tar)
  flipped[3] ^= 1
  t.is(t.throws(() => findTarFile(flipped, 'a.txt', 'L'), { instanceOf: NydusError })?.code, 'ERR_TAR_CHECKSUM')
  const cut = t.throws(() => findTarFile(tar.subarray(0, 1000), 'a.txt', 'L'), {
    instanceOf: NydusError,
    message: /^L: tar entry at byte 0 claims 2000 bytes past the end$/
  })
  t.is(cut?.code, 'ERR_TAR_TRUNCATED')
})
