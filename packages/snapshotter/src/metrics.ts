import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { NydusdManager } from './nydusd-manager.js'
import type { OverlaySnapshotter } from './snapshotter.js'

/** Every number the snapshotter exports at GET /metrics (Prometheus text format). */
export class SnapshotterMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'snapshotter_requests_total',
    help: 'Snapshots service requests, by method',
    labelNames: ['method'],
    registers: [this.registry]
  })
  readonly errors = new Counter({
    name: 'snapshotter_request_errors_total',
    help: 'Snapshots service requests that failed, by method and error code (ALREADY_EXISTS of a remote layer included)',
    labelNames: ['method', 'code'],
    registers: [this.registry]
  })
  readonly duration = new Histogram({
    name: 'snapshotter_request_seconds',
    help: 'Snapshots service request latency, by method',
    labelNames: ['method'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry]
  })

  constructor(sn: OverlaySnapshotter, daemons: NydusdManager) {
    const reg = [this.registry]
    new Gauge({
      name: 'snapshotter_snapshots',
      help: 'Snapshots, by kind',
      labelNames: ['kind'],
      registers: reg,
      collect() {
        const n = { ACTIVE: 0, VIEW: 0, COMMITTED: 0 }
        for (const [, rec] of sn.store.all()) n[rec.kind]++
        for (const [kind, v] of Object.entries(n)) this.set({ kind: kind.toLowerCase() }, v)
      }
    })
    new Gauge({
      name: 'snapshotter_nydusd_count',
      help: 'nydusd daemons running (one per converted image with a container, or the one shared daemon)',
      registers: reg,
      collect() {
        this.set(new Set(daemons.list().flatMap(d => (d.alive ? [d.pid] : []))).size)
      }
    })
    new Gauge({
      name: 'snapshotter_remote_mounts',
      help: 'Images mounted lazily by a nydusd',
      registers: reg,
      collect() {
        this.set(daemons.list().filter(d => d.mounted).length)
      }
    })
    new Counter({
      name: 'snapshotter_nydusd_restarts_total',
      help: 'nydusd daemons started again after they died (recover_policy "restart")',
      registers: reg,
      collect() {
        this.reset()
        this.inc(daemons.restarts)
      }
    })
  }

  /** Times one request and counts it, and its failure by code. */
  observe(method: string): (code?: string) => void {
    const end = this.duration.startTimer({ method })
    this.requests.inc({ method })
    return code => {
      end()
      if (code !== undefined) this.errors.inc({ method, code })
    }
  }
}
