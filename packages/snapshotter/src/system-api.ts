import { rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { SnapshotterMetrics } from './metrics.js'
import type { NydusdManager } from './nydusd-manager.js'

/**
 * nydus-snapshotter's system controller and metrics endpoint in one handler:
 * GET /api/v1/daemons (every image's nydusd) and GET /metrics (Prometheus).
 */
export function systemApi(metrics: SnapshotterMetrics, daemons: NydusdManager): Server {
  return createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type }).end(body)
    }
    const path = (req.url ?? '').split('?')[0]
    if (req.method !== 'GET') return send(405, JSON.stringify({ code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not supported` }))
    if (path === '/api/v1/daemons') return send(200, JSON.stringify(daemons.list()))
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        text => send(200, text, metrics.registry.contentType),
        (err: Error) => send(500, JSON.stringify({ code: 'ERR_INTERNAL', message: err.message }))
      )
      return
    }
    send(404, JSON.stringify({ code: 'NOT_FOUND', message: `no API at ${path}` }))
  })
}

/** Listens on a unix socket path or a TCP host and port. */
export async function listen(server: Server, at: string | { host: string; port: number }): Promise<void> {
  if (typeof at === 'string') await rm(at, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    const done = (): void => {
      server.off('error', reject)
      resolve()
    }
    if (typeof at === 'string') server.listen(at, done)
    else server.listen(at.port, at.host, done)
  })
}
