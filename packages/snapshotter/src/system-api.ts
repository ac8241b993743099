import { rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { statusOf } from '@nydusjs/errors'
import { schemaIssues } from '@nydusjs/storage/s3-config'
import { z } from 'zod/v3'
import type { SnapshotterMetrics } from './metrics.js'
import type { NydusdManager } from './nydusd-manager.js'

/**
 * nydus-snapshotter's system controller and metrics endpoint in one handler:
 * GET /api/v1/daemons (every image's nydusd), PUT /api/v1/nydusd/upgrade
 * (hot upgrade) and GET /metrics (Prometheus).
 */
export function systemApi(metrics: SnapshotterMetrics, daemons: NydusdManager): Server {
  return createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type }).end(body)
    }
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'PUT' && path === '/api/v1/nydusd/upgrade') return upgrade(req, daemons, send)
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

const UpgradeBody = z.strictObject({ nydusd_path: z.string().min(1).optional() })

/** Body `{"nydusd_path": "..."}` (optional here: without it the same build restarts). */
function upgrade(req: IncomingMessage, daemons: NydusdManager, send: (status: number, body: string) => void): void {
  let text = ''
  req.on('data', (b: Buffer) => {
    if (text.length < 65536) text += b.toString()
  })
  req.on('end', () => {
    let body: z.infer<typeof UpgradeBody>
    try {
      body = UpgradeBody.parse(text.trim() === '' ? {} : JSON.parse(text))
    } catch (err) {
      const msg = err instanceof z.ZodError ? schemaIssues(err) : (err as Error).message
      return send(400, JSON.stringify({ code: 'ERR_CONFIG', message: `upgrade request body: ${msg}` }))
    }
    daemons.upgrade(body.nydusd_path).then(
      done => send(200, JSON.stringify(done)),
      (err: Error) => {
        const { http, code } = statusOf(err)
        send(http, JSON.stringify({ code, message: err.message }))
      }
    )
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
