import test from 'ava'
import { DaemonMetrics } from '../src/metrics.js'

test('FUSE op results reach Prometheus in batches and in full at every scrape', async t => {
  const m = new DaemonMetrics()
  const getattr = m.fuse.id('getattr')
  const read = m.fuse.id('read')
  t.is(m.fuse.id('getattr'), getattr)
  // 2 s ago: each op's latency is 2 s plus however slow this machine is today (under 3 s).
  const since = process.hrtime.bigint() - 2_000_000_000n
  for (let i = 0; i < 1500; i++) m.fuse.record(getattr, i % 100 !== 0, since)
  // 1024 went in when the batch filled; the rest wait for the scrape.
  t.is(
    (await m.fuseOps.get()).values.reduce((s, v) => s + v.value, 0),
    1500
  )
  m.fuse.record(read, true, since, 4096)
  m.fuse.record(read, true, since, 100)
  const text = await m.registry.metrics()
  t.regex(text, /^nydusd_fuse_ops_total\{op="getattr",result="ok"\} 1485$/m)
  t.regex(text, /^nydusd_fuse_ops_total\{op="getattr",result="error"\} 15$/m)
  t.regex(text, /^nydusd_fuse_op_seconds_count\{op="read"\} 2$/m)
  t.regex(text, /^nydusd_fuse_op_seconds_bucket\{le="1",op="getattr"\} 0$/m)
  t.regex(text, /^nydusd_fuse_op_seconds_bucket\{le="5",op="getattr"\} 1500$/m)
  t.regex(text, /^nydusd_read_bytes_total 4196$/m)
  const sum = Number(/^nydusd_fuse_op_seconds_sum\{op="getattr"\} ([\d.]+)$/m.exec(text)?.[1])
  t.true(sum >= 1500 * 2 && sum < 1500 * 5, `sum ${sum}`)
})

test("prom.ts's classes are prom-client's own (a prom-client that moved its modules fails here)", async t => {
  const prom = await import('prom-client')
  const ours = await import('../src/prom.js')
  t.is(ours.Registry, prom.Registry)
  t.is(ours.Counter, prom.Counter)
  t.is(ours.Gauge, prom.Gauge)
  t.is(ours.Histogram, prom.Histogram)
  // A shared daemon's scrape: two mounts' registries merged, each series keeping its mountpoint label.
  const [a, b] = ['/mnt/a', '/mnt/b'].map(mnt => new DaemonMetrics(mnt))
  a.cacheHits.inc(2)
  b.cacheHits.inc(3)
  const merged = ours.aggregate([await a.registry.getMetricsAsJSON(), await b.registry.getMetricsAsJSON()])
  const text = await merged.metrics()
  t.regex(text, /^nydusd_cache_hits_total\{mountpoint="\/mnt\/a"\} 2$/m)
  t.regex(text, /^nydusd_cache_hits_total\{mountpoint="\/mnt\/b"\} 3$/m)
})
