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

test('classes: below 2 KiB and above the largest request a plain buffer; 32 KiB to 1 MiB blocks of shared 1 MiB slabs', t => {
  const pool = new BufferPool(4 << 20)
  t.false(pool.take(100).buffer instanceof SharedArrayBuffer)
  t.is(pool.take(8192).buffer.byteLength, 256 * 1024)
  const medium = pool.take(40_000)
  t.true(medium.buffer instanceof SharedArrayBuffer)
  t.is(medium.buffer.byteLength, 1 << 20)
  t.is(pool.pins(medium), 65536)
  pool.give(medium)
  const again = pool.take(65536)
  t.true(again.buffer === medium.buffer && again.byteOffset === medium.byteOffset)
  // Above 1 MiB, a SharedArrayBuffer of its own.
  const large = pool.take(3 << 20)
  t.is(large.buffer.byteLength, 4 << 20)
  pool.give(large)
  t.is(pool.take(4 << 20).buffer, large.buffer)
  t.is(pool.take(8 << 20).length, 8 << 20)
  // A buffer the pool did not make is never taken in.
  pool.give(Buffer.alloc(4096))
  t.is(pool.reused, 2)
})

test('blocks of one slab never overlap, whatever the mix of classes, and a slab emptied is cut again for another class', t => {
  const pool = new BufferPool(1 << 20)
  const sizes = [32, 64, 128, 256, 512, 1024].map(k => k * 1024)
  const held: Buffer[] = []
  let seed = 7
  const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n
  for (let round = 0; round < 2000; round++) {
    if (held.length > 0 && rand(3) === 0) pool.give(held.splice(rand(held.length), 1)[0]!)
    else held.push(pool.take(sizes[rand(sizes.length)]!).fill(held.length % 251))
  }
  // Refill every held block with its index and check none was overwritten by another.
  for (const [i, b] of held.entries()) b.fill(i % 251)
  for (const [i, b] of held.entries())
    t.true(
      b.every(x => x === i % 251),
      `block ${i} overlaps another`
    )
  for (const b of held) pool.give(b)
  // Every block is back: one 1 MiB slab of 32 KiB blocks becomes one 1 MiB block.
  const thirtyTwo = Array.from({ length: 32 }, () => pool.take(32 * 1024))
  const slab = thirtyTwo[0]!.buffer
  t.true(thirtyTwo.every(b => b.buffer === slab))
  for (const b of thirtyTwo) pool.give(b)
  t.is(pool.take(1 << 20).buffer, slab)
})

test('drain forgets idle blocks and slabs: blocks handed out after it come from new memory, blocks still in use stay valid', t => {
  const pool = new BufferPool(1 << 20)
  const kept = pool.take(4096).fill(7)
  const spare = pool.take(4096)
  const medium = pool.take(64 * 1024)
  pool.give(spare)
  pool.give(medium)
  pool.drain()
  t.not(pool.take(4096).buffer, kept.buffer, 'a drained slab is not cut or reused again')
  t.not(pool.take(64 * 1024).buffer, medium.buffer)
  t.true(kept.every(x => x === 7))
  // A block in use when the pool drained may still be handed back: its slab is left to the collector.
  pool.give(kept)
  t.not(pool.take(4096).buffer, kept.buffer)
})

test('over the idle bound the slabs idle longest go, whatever their class: memory follows the sizes in use', t => {
  const pool = new BufferPool(1 << 20, 4 << 20)
  // Four 1 MiB blocks (one slab each) handed back: the idle bound is full.
  const big = [0, 1, 2, 3].map(() => pool.take(1 << 20))
  for (const b of big) pool.give(b)
  // A 64 KiB block is cut from the newest idle slab, not from new memory.
  const small = pool.take(64 * 1024)
  t.is(small.buffer, big[3]!.buffer)
  pool.give(small)
  t.is(pool.take(1 << 20).buffer, big[3]!.buffer)
  // A fifth slab handed back pushes the oldest out.
  const fresh = [pool.take(1 << 20), pool.take(1 << 20), pool.take(1 << 20), pool.take(1 << 20), pool.take(1 << 20)]
  for (const b of fresh) pool.give(b)
  const again = Array.from({ length: 5 }, () => pool.take(1 << 20).buffer)
  t.is(new Set(again.filter(b => fresh.some(f => f.buffer === b))).size, 4, 'four idle slabs were kept, the fifth is new memory')
})

test('onAllocate is told the bytes of every new slab or buffer, not of reused ones', t => {
  let bytes = 0
  const pool = new BufferPool(4 << 20, undefined, n => (bytes += n))
  for (let i = 0; i < 40; i++) pool.give(pool.take(1 << 20))
  t.is(bytes, 1 << 20, 'one slab reused 40 times')
  pool.take(4096)
  t.is(bytes, (1 << 20) + 256 * 1024, 'a small slab')
  const held = Array.from({ length: 3 }, () => pool.take(3 << 20))
  t.is(bytes, (1 << 20) + 256 * 1024 + 3 * (4 << 20))
  t.is(held.length, 3)
})
