import { Counter, Gauge, Histogram, Registry } from 'prom-client'

/** The supernode's Prometheus series (GET /metrics). No label ever carries a URL, a header or a credential. */
export class SupernodeMetrics {
  readonly registry = new Registry()
  readonly originBytes = new Counter({
    name: 'dragonfly_supernode_origin_bytes_total',
    help: 'Bytes read from origins',
    registers: [this.registry]
  })
  readonly originRequests = new Counter({
    name: 'dragonfly_supernode_origin_requests_total',
    help: 'GET requests sent to origins for task data',
    registers: [this.registry]
  })
  readonly piecesScheduled = new Counter({
    name: 'dragonfly_supernode_pieces_scheduled_total',
    help: 'Piece assignments handed to peers, by source',
    labelNames: ['source'],
    registers: [this.registry]
  })
  readonly pieceReports = new Counter({
    name: 'dragonfly_supernode_piece_reports_total',
    help: 'Piece results reported by peers',
    labelNames: ['result'],
    registers: [this.registry]
  })
  readonly uploadBytes = new Counter({
    name: 'dragonfly_supernode_upload_bytes_total',
    help: 'Piece bytes the supernode served from its own copy',
    registers: [this.registry]
  })
  readonly peers = new Gauge({ name: 'dragonfly_supernode_peers', help: 'Peers heard from recently', registers: [this.registry] })
  readonly tasks = new Gauge({ name: 'dragonfly_supernode_tasks', help: 'Tasks known', registers: [this.registry] })
  readonly evictions = new Counter({
    name: 'dragonfly_supernode_peer_evictions_total',
    help: 'Peers excluded from a task (bad pieces) or evicted',
    labelNames: ['scope'],
    registers: [this.registry]
  })
  readonly apiSeconds = new Histogram({
    name: 'dragonfly_supernode_api_seconds',
    help: 'Time to answer an API request',
    labelNames: ['path'],
    buckets: [0.0005, 0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
    registers: [this.registry]
  })
}
