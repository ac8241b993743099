import { statusOf } from '@nydusjs/errors'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import { NydusdError } from './errors.js'

/** `id`: the mount (its mountpoint, `?id=` or `?mountpoint=`); none: the daemon's image. */
export interface ApiHandlers {
  daemon: () => unknown
  metrics: () => Promise<{ contentType: string; body: string }>
  files: (id?: string) => unknown
  prefetch: (id?: string) => unknown
  mounts: () => unknown
  mount: (mountpoint: string | undefined, body: unknown) => Promise<unknown>
  umount: (mountpoint: string | undefined) => Promise<void>
  /** PUT /api/v1/daemon/exit: leave (handing the session to a successor when one is kept). */
  exit: () => void
}

/** A mount request is a bootstrap path and a config: anything near this is not one. */
const MAX_BODY = 1024 * 1024

type Reply = { status: number; body?: unknown; type?: string }

/** The HTTP API on a unix socket, with the original nydusd's paths. */
export async function startApi(sock: string, h: ApiHandlers, log: Logger): Promise<Server> {
  await rm(sock, { force: true })
  const server = createServer((req, res) => {
    const send = ({ status, body, type = 'application/json' }: Reply): void => {
      if (body === undefined) {
        res.writeHead(status).end()
        return
      }
      res.writeHead(status, { 'content-type': type })
      res.end(typeof body === 'string' ? body : JSON.stringify(body))
    }
    const url = new URL(req.url ?? '/', 'http://nydusd')
    const path = url.pathname
    const id = url.searchParams.get('mountpoint') ?? url.searchParams.get('id') ?? undefined
    if (req.method === 'PUT' && path === '/api/v1/daemon/exit') {
      res.writeHead(204).end(() => h.exit())
      return
    }
    const routes: Record<string, Record<string, () => Promise<Reply> | Reply>> = {
      '/api/v1/daemon': { GET: () => ({ status: 200, body: h.daemon() }) },
      '/api/v1/metrics': {
        GET: async () => {
          const m = await h.metrics()
          return { status: 200, body: m.body, type: m.contentType }
        }
      },
      '/api/v1/metrics/files': { GET: () => ({ status: 200, body: h.files(id) }) },
      '/api/v1/daemon/prefetch': { GET: () => ({ status: 200, body: h.prefetch(id) }) },
      '/api/v1/mount': {
        GET: () => ({ status: 200, body: h.mounts() }),
        POST: async () => ({ status: 200, body: await h.mount(id, await readJson(req)) }),
        DELETE: async () => {
          await h.umount(id)
          return { status: 204 }
        }
      }
    }
    const methods = routes[path]
    if (methods === undefined) {
      send({ status: 404, body: { code: 'NOT_FOUND', message: `no API at ${path}` } })
      return
    }
    const fn = methods[req.method ?? '']
    if (fn === undefined) {
      send({ status: 405, body: { code: 'METHOD_NOT_ALLOWED', message: `${req.method ?? ''} ${path} is not supported` } })
      return
    }
    Promise.resolve()
      .then(fn)
      .then(send, (err: Error) => {
        // The status comes from the one error table; the body keeps the project's code.
        const { http, code } = statusOf(err)
        log.error({ err: err.message, code, path, method: req.method }, 'API request failed')
        send({ status: http, body: { code, message: err.message } })
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

async function readJson(req: IncomingMessage): Promise<unknown> {
  const parts: Buffer[] = []
  let size = 0
  for await (const b of req as AsyncIterable<Buffer>) {
    size += b.length
    if (size > MAX_BODY) throw new NydusdError('ERR_BAD_ARGUMENT', `request body over ${MAX_BODY} bytes`)
    parts.push(b)
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'))
  } catch (err) {
    throw new NydusdError('ERR_BAD_ARGUMENT', `request body is not JSON (${(err as Error).message})`)
  }
}
