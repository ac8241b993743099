import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { ChainBackend, ResilientBackend, StorageError, type BlobBackend } from '../src/index.js'

const ID = 'a'.repeat(64)
const good = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251))

/** A backend whose answers the test releases by hand, so nothing depends on the machine's speed. */
class GatedBackend implements BlobBackend {
  readonly calls: Array<{ release: () => void; fail: (e: Error) => void; dst?: Buffer }> = []
  readInto?: (id: string, off: number, dst: Buffer) => Promise<void>
  constructor(
    readonly name: string,
    private readonly bytes: Buffer,
    inPlace: boolean
  ) {
    if (inPlace) {
      this.readInto = async (_id, off, dst) =>
        await new Promise<void>((resolve, reject) => {
          this.calls.push({
            release: () => {
              this.bytes.copy(dst, 0, off, off + dst.length)
              resolve()
            },
            fail: reject,
            dst
          })
        })
    }
  }

  async read(_id: string, off: number, len: number): Promise<Buffer> {
    return await new Promise<Buffer>((resolve, reject) => {
      this.calls.push({ release: () => resolve(Buffer.from(this.bytes.subarray(off, off + len))), fail: reject })
    })
  }

  async size(): Promise<number> {
    return this.bytes.length
  }
  async close(): Promise<void> {}
}

class FixedBackend implements BlobBackend {
  reads = 0
  constructor(
    readonly name: string,
    private readonly answer: (len: number) => Promise<Buffer>
  ) {}
  async read(_id: string, _off: number, len: number): Promise<Buffer> {
    this.reads++
    return await this.answer(len)
  }
  async size(): Promise<number> {
    return good.length
  }
  async close(): Promise<void> {}
}

const waitFor = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise(resolve => setImmediate(resolve))
}

test('a link that never answers is abandoned at its timeout and the next link serves; its late in-place write never reaches the caller', async t => {
  const hung = new GatedBackend('hung', Buffer.alloc(good.length, 0xee), true)
  const chain = new ChainBackend([
    { backend: hung, options: { timeoutMs: 50, retries: 3 } },
    { backend: new FixedBackend('next', async len => Buffer.from(good.subarray(0, len))) }
  ])
  const dst = Buffer.alloc(1024)
  const r = await chain.readVerified(ID, 0, 1024, () => true, undefined, dst)
  t.is(r.source, 'next')
  t.true(r.abandoned, 'the caller is told its buffer was given up')
  t.not(r.data, dst)
  t.true(r.data.equals(good.subarray(0, 1024)))
  t.is(hung.calls.length, 1, 'an in-place attempt is not retried into the same buffer')
  hung.calls[0].release() // the hung read lands late, into the abandoned buffer only
  t.true(r.data.equals(good.subarray(0, 1024)))
  t.true(dst.every(b => b === 0xee))
  // readInto cannot hand over another buffer: it says the buffer is gone.
  const e = await t.throwsAsync(chain.readInto(ID, 0, Buffer.alloc(16)), { instanceOf: NydusError })
  t.is(e?.code, 'ERR_BACKEND_TIMEOUT')
  t.true((e as unknown as { bufferAbandoned: boolean }).bufferAbandoned)
})

test('a late answer of a copying link is dropped; a retry after a timeout is answered normally', async t => {
  const slow = new GatedBackend('slow', good, false)
  const r = new ResilientBackend(slow, { timeoutMs: 30, retries: 1, backoffMs: 0 })
  const p = r.read(ID, 0, 10)
  await waitFor(() => slow.calls.length === 2) // the first attempt timed out, the retry is in flight
  slow.calls[1].release()
  t.true((await p).equals(good.subarray(0, 10)))
  slow.calls[0].release() // late: nobody sees it
  const e = await t.throwsAsync(new ResilientBackend(new GatedBackend('x', good, false), { timeoutMs: 10, retries: 0 }).read(ID, 0, 1))
  t.is((e as StorageError).code, 'ERR_BACKEND_TIMEOUT')
  t.regex(e?.message ?? '', /^x: blob a{64} 0\+1: no answer within 10 ms$/)
})

test('retryable failures are retried with backoff; not-found and auth are not', async t => {
  let n = 0
  const flaky = new FixedBackend('flaky', async () => {
    if (n++ < 2) throw new StorageError('ERR_BACKEND_HTTP', 'flaky: status 503')
    return good
  })
  t.true((await new ResilientBackend(flaky, { retries: 2, backoffMs: 1 }).read(ID, 0, 1)).equals(good))
  t.is(flaky.reads, 3)
  for (const code of ['ERR_BLOB_NOT_FOUND', 'ERR_BACKEND_AUTH'] as const) {
    const once = new FixedBackend('once', async () => {
      throw new StorageError(code, 'no')
    })
    await t.throwsAsync(new ResilientBackend(once, { retries: 5, backoffMs: 1 }).read(ID, 0, 1), { message: 'no' })
    t.is(once.reads, 1, code)
  }
})

test('the breaker opens after repeated failures, sends nothing while open, and closes after one good probe (injected clock)', async t => {
  let now = 1000
  let fail = true
  const b = new FixedBackend('b', async () => {
    if (fail) throw new StorageError('ERR_BACKEND_HTTP', 'b: status 500')
    return good
  })
  const r = new ResilientBackend(b, { retries: 0, breakerThreshold: 2, breakerResetMs: 500, now: () => now })
  await t.throwsAsync(r.read(ID, 0, 1))
  await t.throwsAsync(r.read(ID, 0, 1))
  t.true(r.breaker.open)
  const e = await t.throwsAsync(r.read(ID, 0, 1))
  t.is((e as StorageError).code, 'ERR_BACKEND_CIRCUIT_OPEN')
  t.is(b.reads, 2, 'an open breaker sends nothing')
  now += 499
  await t.throwsAsync(r.read(ID, 0, 1), { message: /circuit open/ })
  now += 1
  fail = false
  t.true((await r.read(ID, 0, 1)).equals(good), 'the probe is let through after the reset time')
  t.false(r.breaker.open)
})

test('the concurrency cap holds, and waiting for a slot counts against the timeout', async t => {
  const g = new GatedBackend('g', good, false)
  const r = new ResilientBackend(g, { concurrency: 2, timeoutMs: 10_000, retries: 0 })
  const all = [0, 1, 2, 3].map(async i => await r.read(ID, i, 1))
  await waitFor(() => g.calls.length === 2)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.is(g.calls.length, 2, 'two in flight at most')
  g.calls[0].release()
  await waitFor(() => g.calls.length === 3)
  for (const c of g.calls.slice(1)) c.release()
  await waitFor(() => g.calls.length === 4)
  g.calls[3].release()
  t.deepEqual(
    (await Promise.all(all)).map(b => b[0]),
    [0, 1, 2, 3]
  )
  const tight = new ResilientBackend(new GatedBackend('t', good, false), { concurrency: 1, timeoutMs: 30, retries: 0 })
  const first = tight.read(ID, 0, 1).catch((e: Error) => e)
  const second = await tight.read(ID, 0, 1).catch((e: Error) => e)
  t.is((second as StorageError).code, 'ERR_BACKEND_TIMEOUT', 'a request that never got a slot times out too')
  t.is(((await first) as StorageError).code, 'ERR_BACKEND_TIMEOUT')
})

test('a chain whose links all fail with one code reports that code (a FUSE read then says ETIMEDOUT or EACCES)', async t => {
  const denied = (name: string): FixedBackend =>
    new FixedBackend(name, async () => {
      throw new StorageError('ERR_BACKEND_AUTH', `${name}: denied`)
    })
  const e = await t.throwsAsync(new ChainBackend([{ backend: denied('a') }, { backend: denied('b') }]).read(ID, 0, 1))
  t.is((e as StorageError).code, 'ERR_BACKEND_AUTH')
  t.regex(e?.message ?? '', /every source failed.*a: denied; b: denied/)
  const mixed = new ChainBackend([
    { backend: denied('a') },
    {
      backend: new FixedBackend('c', async () => {
        throw new StorageError('ERR_BLOB_NOT_FOUND', 'c: not found')
      })
    }
  ])
  t.is(((await t.throwsAsync(mixed.read(ID, 0, 1))) as StorageError).code, 'ERR_BACKEND_IO')
})

test('a link whose answer fails verification is refused and the next link asked; the refusal counts against its breaker', async t => {
  const bad = new FixedBackend('bad', async () => Buffer.alloc(8))
  const chain = new ChainBackend([
    { backend: bad, options: { breakerThreshold: 2 } },
    { backend: new FixedBackend('ok', async () => good.subarray(0, 8)) }
  ])
  for (let i = 0; i < 3; i++) t.is((await chain.readVerified(ID, 0, 8, d => d.equals(good.subarray(0, 8)))).source, 'ok')
  t.is(bad.reads, 2, 'after two refusals the breaker skips it')
  t.deepEqual(chain.openLinks(), ['bad'])
})
