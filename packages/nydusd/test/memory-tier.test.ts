import test from 'ava'
import { pino } from 'pino'
import { BufferLru } from '../src/buffer-lru.js'
import { MemoryTier } from '../src/memory-tier.js'

const log = pino({ level: 'silent' })
const MiB = 1024 * 1024

test('one bound for the decoded chunks of every mount of the process; a release drops only its own mount', t => {
  // Each asks for 4 MiB: the process holds 4 MiB in all, not 4 MiB a mount.
  const a = new MemoryTier(MiB, 4 * MiB, MiB, undefined, log)
  const b = new MemoryTier(MiB, 4 * MiB, MiB, undefined, log)
  t.is(a.pool, b.pool)
  for (let i = 0; i < 3; i++) a.keep('blob', i * MiB, a.pool.take(MiB).fill(1))
  for (let i = 0; i < 3; i++) b.keep('blob', i * MiB, b.pool.take(MiB).fill(2))
  const held = (m: MemoryTier): number => [0, 1, 2].filter(i => m.decoded.get(`blob/${i * MiB}`) !== undefined).length
  // Same blob and offsets: each mount sees its own chunks, never the other's.
  t.is(held(a) + held(b), 4)
  t.is(held(b), 3, 'the least recently kept (a mount that read earlier) go first')
  t.true(b.decoded.get(`blob/${2 * MiB}`)!.every(x => x === 2))
  b.release()
  t.is(held(b), 0)
  t.is(held(a), 1)
  a.release()
})

test('a BufferLru view sees, takes and clears only its own keys', t => {
  const evicted: number[] = []
  const lru = new BufferLru(10, v => evicted.push(v[0]))
  const x = lru.view('x:')
  const y = lru.view('y:')
  x.set('k', Buffer.from([1, 0, 0, 0]))
  y.set('k', Buffer.from([2, 0, 0, 0]))
  t.is(x.get('k')![0], 1)
  t.is(y.get('k')![0], 2)
  x.set('l', Buffer.from([3, 0, 0, 0]))
  t.deepEqual(evicted, [1], 'over the shared bound: the oldest entry of any view goes')
  t.is(y.take('k')![0], 2)
  t.is(lru.size, 4)
  x.clear()
  t.is(lru.size, 0)
  t.deepEqual(evicted, [1, 3])
})

test('a chunk evicted while its cache write runs is recycled once the write lands, not before', async t => {
  let land!: () => void
  const slow = new Promise<void>(resolve => {
    land = resolve
  })
  const cache = { put: async (_b: string, offset: number) => (offset === 0 ? await slow : undefined) }
  const m = new MemoryTier(MiB, 4 * MiB, MiB, cache as never, log)
  const first = m.pool.take(MiB)
  m.keep('slow', 0, first)
  // Four more: the first is evicted while its write is still running.
  for (let i = 1; i <= 4; i++) m.keep('slow', i * MiB, m.pool.take(MiB))
  t.is(m.decoded.get('slow/0'), undefined)
  t.not(m.pool.take(MiB).buffer, first.buffer, 'not handed out while the write reads it')
  land()
  await m.flush()
  t.is(m.pool.take(MiB).buffer, first.buffer, 'handed back once written')
  m.release()
})
