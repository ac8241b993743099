import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pushBlob, startFaultProxy, startRegistry, tempDir, type Fault } from '@nydusjs/testkit'
import { ChainBackend, LocalFsBackend, RegistryBackend } from '../src/index.js'

const REPO = 'nydusjs/chain'
const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 13) % 256))

async function setup(t: Parameters<typeof tempDir>[0]) {
  const reg = await startRegistry(t)
  const id = (await pushBlob(reg, REPO, data)).slice(7)
  const proxy = await startFaultProxy(t, reg.url)
  const dir = await tempDir(t)
  await writeFile(join(dir, id), data)
  const failovers: string[] = []
  const served: string[] = []
  const chain = new ChainBackend(
    [
      {
        backend: new RegistryBackend({ scheme: 'http', host: proxy.host, repo: REPO, timeoutMs: 400 }),
        options: { retries: 1, backoffMs: 10, timeoutMs: 600, breakerThreshold: 1000 }
      },
      { backend: new LocalFsBackend(dir) }
    ],
    { onFailover: link => failovers.push(link), onServed: link => served.push(link) }
  )
  t.teardown(async () => {
    await chain.close()
  })
  return { reg, id, proxy, chain, failovers, served, dir }
}

const range = (off: number, len: number): Buffer => data.subarray(off, off + len)

for (const fault of ['reset', 'stall', 'status500', 'status503', 'truncate', 'corrupt', 'unauthorized'] as Fault[]) {
  test(`every read is right while the registry suffers '${fault}'; the chain fails over to the next source`, async t => {
    const { id, proxy, chain, failovers, served } = await setup(t)
    proxy.set(fault)
    const verify = (off: number, len: number) => (b: Buffer) => b.equals(range(off, len))
    for (let i = 0; i < 4; i++) {
      const r = await chain.readVerified(id, i * 1000, 5000, verify(i * 1000, 5000))
      t.true(r.data.equals(range(i * 1000, 5000)))
      t.is(r.source, 'localfs')
    }
    t.is(failovers.filter(f => f === 'registry').length, 4)
    t.true(proxy.counts()[fault] >= 4)
    proxy.set('pass')
    const back = await chain.readVerified(id, 0, 100, verify(0, 100))
    t.is(back.source, 'registry', 'the registry serves again once it recovers')
    t.is(served.at(-1), 'registry')
  })
}

test('a transient fault is retried on the same source', async t => {
  const { id, proxy, chain, failovers } = await setup(t)
  proxy.next('status503')
  const r = await chain.readVerified(id, 10, 10, b => b.equals(range(10, 10)))
  t.is(r.source, 'registry')
  t.deepEqual(failovers, [])
  t.is(proxy.counts().status503, 1)
})

test('with every source failing, reads fail fast with one error naming each source; the chain recovers', async t => {
  const reg = await startRegistry(t)
  const id = (await pushBlob(reg, REPO, data)).slice(7)
  const proxy = await startFaultProxy(t, reg.url)
  proxy.set('stall')
  let clock = 0
  const chain = new ChainBackend([
    {
      backend: new RegistryBackend({ scheme: 'http', host: proxy.host, repo: REPO }),
      options: { retries: 1, backoffMs: 10, timeoutMs: 300, breakerThreshold: 2, breakerResetMs: 500, now: () => clock }
    },
    { backend: new LocalFsBackend(await tempDir(t)) }
  ])
  t.teardown(async () => {
    await chain.close()
  })
  const err = await t.throwsAsync(chain.read(id, 0, 10), { instanceOf: NydusError })
  t.regex(err?.message ?? '', /every source failed.*registry: .*no answer within 300 ms.*localfs .* not found/)
  await t.throwsAsync(chain.read(id, 0, 10))
  t.deepEqual(chain.openLinks(), ['registry'], 'two failures open the breaker')
  const stalls = proxy.counts().stall
  const e3 = await t.throwsAsync(chain.read(id, 0, 10))
  t.regex(e3?.message ?? '', /registry: skipped \(circuit open\)/)
  t.is(proxy.counts().stall, stalls, 'an open breaker sends nothing')
  proxy.set('pass')
  clock += 500
  t.true((await chain.read(id, 0, 10)).equals(range(0, 10)), 'a probe after the reset time closes it again')
  t.deepEqual(chain.openLinks(), [])
})

test('concurrency per source is capped', async t => {
  const dir = await tempDir(t)
  const id = 'b'.repeat(64)
  await writeFile(join(dir, id), data)
  let active = 0
  let peak = 0
  const inner = new LocalFsBackend(dir)
  const slow = {
    name: 'slow',
    size: inner.size.bind(inner),
    close: inner.close.bind(inner),
    read: async (i: string, o: number, l: number) => {
      active++
      peak = Math.max(peak, active)
      await sleep(20)
      active--
      return await inner.read(i, o, l)
    }
  }
  const chain = new ChainBackend([{ backend: slow, options: { concurrency: 3 } }])
  await Promise.all(Array.from({ length: 12 }, async (_, i) => await chain.read(id, i, 10)))
  t.is(peak, 3)
  await chain.close()
})

test('readVerified into a caller buffer: every fault still fails over, and the right bytes end up in that buffer', async t => {
  const { id, proxy, chain, failovers } = await setup(t)
  for (const fault of ['corrupt', 'truncate', 'reset'] as Fault[]) {
    proxy.set(fault)
    const dst = Buffer.alloc(5000, 0xee)
    const seen: Buffer[] = []
    const r = await chain.readVerified(
      id,
      3000,
      5000,
      b => {
        seen.push(b)
        return b.equals(range(3000, 5000))
      },
      undefined,
      dst
    )
    t.is(r.data, dst, 'the answer is the caller buffer')
    t.true(dst.equals(range(3000, 5000)))
    t.is(r.source, 'localfs')
    t.true(
      seen.every(b => b === dst),
      'each link wrote into the caller buffer'
    )
  }
  t.is(failovers.length, 3)
  proxy.set('pass')
  const dst = Buffer.alloc(4096)
  await chain.readInto(id, 100, dst)
  t.true(dst.equals(range(100, 4096)))
  await t.throwsAsync(
    chain.readVerified(id, 0, 10, () => true, undefined, Buffer.alloc(9)),
    { instanceOf: RangeError }
  )
})
