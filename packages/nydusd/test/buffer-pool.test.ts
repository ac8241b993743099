import test from 'ava'
import { BufferPool } from '../src/buffer-pool.js'

test('small buffers are blocks cut from common slabs: distinct while taken, reused once handed back, a double give ignored', t => {
  const pool = new BufferPool(1 << 20)
  const taken = Array.from({ length: 200 }, (_, i) => {
    const b = pool.take(4096)
    b.fill(i)
    return b
  })
  // 200 blocks of 4 KiB come from a few 256 KiB slabs, and none overlaps another.
  t.true(new Set(taken.map(b => b.buffer)).size <= 4)
  for (const [i, b] of taken.entries())
    t.true(
      b.every(x => x === i % 256),
      `block ${i} was overwritten`
    )
  t.is(pool.reused, 0)
  pool.give(taken[7])
  pool.give(taken[7])
  const again = pool.take(3000)
  t.is(again.buffer, taken[7].buffer)
  t.is(again.byteOffset, taken[7].byteOffset)
  t.is(again.length, 3000)
  // The second give was ignored: the next take is a new block, not block 7 a second time.
  const next = pool.take(4096)
  t.false(next.buffer === taken[7].buffer && next.byteOffset === taken[7].byteOffset)
  t.is(pool.reused, 1)
})

test('classes: below 2 KiB and above the largest request a plain buffer; from 32 KiB a SharedArrayBuffer of its own', t => {
  const pool = new BufferPool(1 << 20)
  t.false(pool.take(100).buffer instanceof SharedArrayBuffer)
  t.is(pool.take(8192).buffer.byteLength, 256 * 1024)
  const large = pool.take(40_000)
  t.true(large.buffer instanceof SharedArrayBuffer)
  t.is(large.buffer.byteLength, 65536)
  pool.give(large)
  t.is(pool.take(65536).buffer, large.buffer)
  t.is(pool.take(2 << 20).length, 2 << 20)
  // A buffer the pool did not make is never taken in.
  pool.give(Buffer.alloc(4096))
  t.is(pool.reused, 1)
})

test('drain forgets idle blocks and slabs: blocks handed out after it come from new memory, blocks still in use stay valid', t => {
  const pool = new BufferPool(1 << 20)
  const kept = pool.take(4096).fill(7)
  const spare = pool.take(4096)
  const large = pool.take(64 * 1024)
  pool.give(spare)
  pool.give(large)
  pool.drain()
  t.not(pool.take(4096).buffer, kept.buffer, 'a drained slab is not cut or reused again')
  t.not(pool.take(64 * 1024).buffer, large.buffer)
  t.true(kept.every(x => x === 7))
  // A block in use when the pool drained can still be handed back and reused.
  pool.give(kept)
  t.is(pool.take(4096).buffer, kept.buffer)
})

test('over the idle bound the buffers idle longest go, whatever their class: a class in use keeps being reused', t => {
  const pool = new BufferPool(1 << 20, 4 << 20)
  // The bound filled with 1 MiB buffers nobody takes again...
  const big = [0, 1, 2, 3].map(() => pool.take(1 << 20))
  for (const b of big) pool.give(b)
  // ...does not stop a 64 KiB buffer from being kept: the oldest 1 MiB one makes room.
  const small = pool.take(64 * 1024)
  pool.give(small)
  t.is(pool.take(64 * 1024).buffer, small.buffer)
  t.is(pool.take(1 << 20).buffer, big[3]!.buffer, 'the newest 1 MiB buffer stayed')
  t.not(pool.take(1 << 20).buffer, big[0]!.buffer, 'the oldest went')
})

test('onChurn is called after every 32 MiB of buffers allocated, not for reused ones', t => {
  let churns = 0
  const pool = new BufferPool(1 << 20, undefined, () => churns++)
  for (let i = 0; i < 40; i++) pool.give(pool.take(1 << 20))
  t.is(churns, 0, 'one buffer reused 40 times')
  const held = Array.from({ length: 70 }, () => pool.take(1 << 20))
  t.is(churns, 2)
  t.is(held.length, 70)
})
