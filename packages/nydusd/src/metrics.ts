import { Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Every number the daemon exports at GET /api/v1/metrics (Prometheus text format). */
export class DaemonMetrics {
  readonly registry = new Registry()
  readonly fuseOps = new Counter({ name: 'nydusd_fuse_ops_total', help: 'FUSE operations by op and result', labelNames: ['op', 'result'], registers: [this.registry] })
  readonly fuseLatency = new Histogram({ name: 'nydusd_fuse_op_seconds', help: 'FUSE operation latency', labelNames: ['op'], buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [this.registry] })
  readonly bytesRead = new Counter({ name: 'nydusd_read_bytes_total', help: 'Bytes returned to FUSE readers', registers: [this.registry] })
  readonly cacheHits = new Counter({ name: 'nydusd_cache_hits_total', help: 'Chunks served from the local cache', registers: [this.registry] })
  readonly cacheMisses = new Counter({ name: 'nydusd_cache_misses_total', help: 'Chunks not in the local cache', registers: [this.registry] })
  readonly backendRequests = new Counter({ name: 'nydusd_backend_requests_total', help: 'Range requests to a backend, by result', labelNames: ['backend', 'result'], registers: [this.registry] })
  readonly backendBytes = new Counter({ name: 'nydusd_backend_bytes_total', help: 'Bytes fetched from a backend', labelNames: ['backend'], registers: [this.registry] })
  readonly backendLatency = new Histogram({ name: 'nydusd_backend_request_seconds', help: 'Backend request latency', labelNames: ['backend'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [this.registry] })
  readonly backendFailovers = new Counter({ name: 'nydusd_backend_failovers_total', help: 'Requests a source of the chain gave up on, so the next one was tried', labelNames: ['backend'], registers: [this.registry] })
  readonly verifyFailures = new Counter({ name: 'nydusd_chunk_verify_failures_total', help: 'Chunks whose digest did not match the bootstrap', labelNames: ['backend'], registers: [this.registry] })
  readonly prefetchChunks = new Gauge({ name: 'nydusd_prefetch_chunks', help: 'Prefetch progress in chunks', labelNames: ['state'], registers: [this.registry] })
  readonly prefetchBytes = new Counter({ name: 'nydusd_prefetch_bytes_total', help: 'Bytes fetched by prefetch', registers: [this.registry] })
}
