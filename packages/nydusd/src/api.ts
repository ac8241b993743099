import { statusOf } from '@nydusjs/errors'
import { createServer, type Server } from 'node:http'
import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'

export interface ApiHandlers {
  daemon: () => unknown
  metrics: () => Promise<{ contentType: string; body: string }>
  files: () => unknown
  prefetch: () => unknown
  /** PUT /api/v1/daemon/exit: leave (handing the session to a successor when one is kept). */
  exit: () => void
}

/** The HTTP API on a unix socket, with the original nydusd's paths. */
export async function startApi(sock: string, h: ApiHandlers, log: Logger): Promise<Server> {
  await rm(sock, { force: true })
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type })
      res.end(typeof body === 'string' ? body : JSON.stringify(body))
    }
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'PUT' && path === '/api/v1/daemon/exit') {
      res.writeHead(204).end(() => h.exit())
      return
    }
    if (req.method !== 'GET') {
      send(405, { code: 'METHOD_NOT_ALLOWED', message: `${req.method ?? ''} is not supported` })
      return
    }
    const route: Record<string, () => Promise<void> | void> = {
      '/api/v1/daemon': () => send(200, h.daemon()),
      '/api/v1/metrics': async () => {
        const m = await h.metrics()
        send(200, m.body, m.contentType)
      },
      '/api/v1/metrics/files': () => send(200, h.files()),
      '/api/v1/daemon/prefetch': () => send(200, h.prefetch())
    }
    const fn = route[path]
    if (fn === undefined) {
      send(404, { code: 'NOT_FOUND', message: `no API at ${path}` })
      return
    }
    Promise.resolve()
      .then(fn)
      .catch((err: Error) => {
        // The status comes from the one error table; the body keeps the project's code.
        const { http, code } = statusOf(err)
        log.error({ err: err.message, code, path }, 'API request failed')
        send(http, { code, message: err.message })
      })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(sock, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
