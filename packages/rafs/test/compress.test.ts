import test from 'ava'
import { randomBytes } from 'node:crypto'
import { CHUNK_FLAG_COMPRESSED, RafsError, compressChunk, decompressChunk, decompressChunkInto } from '../src/index.js'

const text = Buffer.from('nydus chunk '.repeat(6000))

test('decompressChunkInto decodes into the given buffer and agrees with decompressChunk', t => {
  const enc = compressChunk(text, 'zstd')
  t.is(enc.flags, CHUNK_FLAG_COMPRESSED)
  const dst = Buffer.alloc(text.length + 100)
  const out = decompressChunkInto(enc.data, enc.flags, text.length, dst)
  t.is(out.buffer, dst.buffer)
  t.true(out.equals(text))
  t.true(out.equals(decompressChunk(enc.data, enc.flags, text.length)))
})

test('a raw chunk comes back as a view of its input, the buffer untouched', t => {
  const raw = randomBytes(4096)
  const dst = Buffer.alloc(4096)
  const out = decompressChunkInto(raw, 0, raw.length, dst)
  t.is(out.buffer, raw.buffer)
  t.true(dst.equals(Buffer.alloc(4096)))
})

test('bad chunks are refused with ERR_RAFS_BAD_CHUNK, never decoded short or long', t => {
  const enc = compressChunk(text, 'zstd')
  const dst = Buffer.alloc(text.length * 2)
  const claim = t.throws(() => decompressChunkInto(enc.data, enc.flags, text.length - 1, dst), { instanceOf: RafsError })
  t.is(claim?.code, 'ERR_RAFS_BAD_CHUNK')
  const cut = t.throws(() => decompressChunkInto(enc.data.subarray(0, enc.data.length - 9), enc.flags, text.length, dst), {
    instanceOf: RafsError
  })
  t.is(cut?.code, 'ERR_RAFS_BAD_CHUNK')
  const flipped = Buffer.from(enc.data)
  flipped[flipped.length >> 1] ^= 0xff
  t.throws(
    () => {
      // Either zstd refuses the frame or the bytes differ: a flipped byte never decodes to the original.
      if (decompressChunkInto(flipped, enc.flags, text.length, dst).equals(text)) throw new Error('decoded a corrupt frame to the original')
      throw new RafsError('ERR_RAFS_BAD_CHUNK', 'decoded to other bytes')
    },
    { instanceOf: RafsError }
  )
  t.throws(() => decompressChunkInto(enc.data, enc.flags, text.length, Buffer.alloc(10)), { instanceOf: RangeError })
})
