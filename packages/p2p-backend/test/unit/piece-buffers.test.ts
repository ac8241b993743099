import test from 'ava'
import { PieceBuffers } from '../../src/io/piece-buffers.js'

const MIB = 1 << 20

test('piece buffers are reused by size class, and only so many are kept', t => {
  const pool = new PieceBuffers(2)
  const a = pool.take(3 << 20)
  t.is(a.length, 3 << 20)
  pool.give(a)
  const b = pool.take(4 << 20)
  t.is(b.buffer, a.buffer, 'a 3 MiB and a 4 MiB piece share the 4 MiB class')
  t.not(pool.take(4 << 20).buffer, a.buffer, 'taken buffers are not handed out twice')
  const small = pool.take(1000)
  t.is(small.buffer.byteLength, 64 << 10)
  pool.give(small.subarray(10)) // not a buffer's start: dropped, not handed out short
  t.not(pool.take(1000).buffer, small.buffer)
  const many = [pool.take(MIB), pool.take(MIB), pool.take(MIB)]
  for (const m of many) pool.give(m)
  const again = [pool.take(MIB), pool.take(MIB), pool.take(MIB)].map(m => m.buffer)
  t.is(again.filter(ab => many.some(m => m.buffer === ab)).length, 2, 'two kept, the third freed')
})
