import { Counter, Gauge, Histogram, Registry } from './prom.js'

/** Every number the daemon exports at GET /api/v1/metrics (Prometheus text format). */
export class DaemonMetrics {
  readonly registry = new Registry()

  /** `mountpoint`: a label on every series, so a shared daemon's mounts are told apart. */
  constructor(mountpoint?: string) {
    if (mountpoint !== undefined) this.registry.setDefaultLabels({ mountpoint })
  }

  /** FUSE ops are recorded here and reach the three metrics below in batches. */
  readonly fuse: FuseOpRecorder = new FuseOpRecorder(this)
  readonly fuseOps = new Counter({
    name: 'nydusd_fuse_ops_total',
    help: 'FUSE operations by op and result',
    labelNames: ['op', 'result'],
    registers: [this.registry],
    collect: () => this.fuse.flush()
  })
  readonly fuseLatency = new Histogram({
    name: 'nydusd_fuse_op_seconds',
    help: 'FUSE operation latency',
    labelNames: ['op'],
    buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
    collect: () => this.fuse.flush()
  })
  readonly bytesRead = new Counter({
    name: 'nydusd_read_bytes_total',
    help: 'Bytes returned to FUSE readers',
    registers: [this.registry],
    collect: () => this.fuse.flush()
  })
  readonly cacheHits = new Counter({
    name: 'nydusd_cache_hits_total',
    help: 'Chunks served from the local cache',
    registers: [this.registry]
  })
  readonly cacheMisses = new Counter({
    name: 'nydusd_cache_misses_total',
    help: 'Chunks not in the local cache',
    registers: [this.registry]
  })
  readonly backendRequests = new Counter({
    name: 'nydusd_backend_requests_total',
    help: 'Range requests to a backend, by result',
    labelNames: ['backend', 'result'],
    registers: [this.registry]
  })
  readonly backendBytes = new Counter({
    name: 'nydusd_backend_bytes_total',
    help: 'Bytes fetched from a backend',
    labelNames: ['backend'],
    registers: [this.registry]
  })
  readonly backendLatency = new Histogram({
    name: 'nydusd_backend_request_seconds',
    help: 'Backend request latency',
    labelNames: ['backend'],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry]
  })
  readonly backendFailovers = new Counter({
    name: 'nydusd_backend_failovers_total',
    help: 'Requests a source of the chain gave up on, so the next one was tried',
    labelNames: ['backend'],
    registers: [this.registry]
  })
  readonly verifyFailures = new Counter({
    name: 'nydusd_chunk_verify_failures_total',
    help: 'Chunks whose digest did not match the bootstrap',
    labelNames: ['backend'],
    registers: [this.registry]
  })
  readonly prefetchChunks = new Gauge({
    name: 'nydusd_prefetch_chunks',
    help: 'Prefetch progress in chunks',
    labelNames: ['state'],
    registers: [this.registry]
  })
  readonly prefetchBytes = new Counter({
    name: 'nydusd_prefetch_bytes_total',
    help: 'Bytes fetched by prefetch',
    registers: [this.registry]
  })
}

const BATCH = 1024

/**
 * FUSE op results, kept in flat arrays and applied to prom-client in batches
 * (when the arrays fill, and before every scrape). A metadata walk is a chain
 * of FUSE replies, each waiting on the JS thread: prom-client's work per call
 * (label lookup, bucket search) on that path made the walk 6% slower.
 */
export class FuseOpRecorder {
  private readonly names: string[] = []
  private readonly op = new Uint8Array(BATCH)
  private readonly failed = new Uint8Array(BATCH)
  private readonly seconds = new Float64Array(BATCH)
  private bytes = 0
  private n = 0

  constructor(private readonly m: DaemonMetrics) {}

  /** The number that stands for `op` in `record`. */
  id(op: string): number {
    const i = this.names.indexOf(op)
    return i >= 0 ? i : this.names.push(op) - 1
  }

  /** One op answered: `since` is process.hrtime.bigint() when it arrived; `bytes` it returned, for reads. */
  record(id: number, ok: boolean, since: bigint, bytes = 0): void {
    const i = this.n
    this.op[i] = id
    this.failed[i] = ok ? 0 : 1
    this.seconds[i] = Number(process.hrtime.bigint() - since) / 1e9
    this.bytes += bytes
    if (++this.n === BATCH) this.flush()
  }

  flush(): void {
    const { fuseOps, fuseLatency, bytesRead } = this.m
    for (let i = 0; i < this.n; i++) {
      const op = this.names[this.op[i]]
      fuseOps.inc({ op, result: this.failed[i] === 1 ? 'error' : 'ok' })
      fuseLatency.observe({ op }, this.seconds[i])
    }
    if (this.bytes > 0) bytesRead.inc(this.bytes)
    this.n = 0
    this.bytes = 0
  }
}
