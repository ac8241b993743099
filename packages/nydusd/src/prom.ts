import { createRequire } from 'node:module'
import type * as Prom from 'prom-client'

// prom-client's index.js also loads its push gateway, summaries and default
// metrics (and with them @opentelemetry/api, 60-odd files): about 1 MB of an
// idle daemon, 2-3 MB of bare node. These are the modules index.js re-exports
// these classes from; test/metrics.test.ts checks they are the same classes.
const load = createRequire(import.meta.url)

export const Registry = load('prom-client/lib/registry') as typeof Prom.Registry
export const Counter = load('prom-client/lib/counter') as typeof Prom.Counter
export const Gauge = load('prom-client/lib/gauge') as typeof Prom.Gauge
export const Histogram = load('prom-client/lib/histogram') as typeof Prom.Histogram

/** Metrics of several registries merged (a shared daemon's mounts); loaded when first asked for. */
export function aggregate(all: object[]): Prom.Registry {
  return (load('prom-client/lib/cluster') as typeof Prom.AggregatorRegistry).aggregate(all)
}
