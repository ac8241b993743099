import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type Fault =
  | 'pass'
  | 'reset'
  | 'cutBody'
  | 'stall'
  | 'hold'
  | 'status405'
  | 'status500'
  | 'status503'
  | 'truncate'
  | 'corrupt'
  | 'unauthorized'

export interface FaultProxy {
  host: string
  url: string
  /** The fault applied to every blob request from now on ('hold': answered when it changes, as a slow source would). */
  set: (f: Fault) => void
  /** The first try of each distinct blob request (path and Range) gets the next of `faults` in turn; its retries pass. */
  firstTries: (faults: Fault[]) => void
  /** The fault applied to the next `n` blob requests only. */
  next: (f: Fault, n?: number) => void
  /** Blob requests seen, by the fault applied. */
  counts: () => Record<Fault, number>
  /** Blob requests seen, in order: method, path without the query, and the fault applied. */
  requests: () => Array<{ method: string; path: string; fault: Fault }>
  /** Blob body bytes sent to clients, by blob digest: what the registry served. */
  blobBytes: () => Map<string, number>
  close: () => Promise<void>
}

/**
 * An HTTP proxy on a free loopback port (or on `o.host`, e.g. a test bridge's
 * address) in front of any source. Requests for blobs (`/blobs/` in the
 * path) get the current fault; others (tokens) pass.
 */
export async function startFaultProxy(
  t: { teardown: (fn: () => Promise<void>) => void },
  upstream: string,
  o: { host?: string } = {}
): Promise<FaultProxy> {
  const up = new URL(upstream)
  const listenHost = o.host ?? '127.0.0.1'
  let mode: Fault = 'pass'
  const queue: Fault[] = []
  let pattern: Fault[] = []
  let turn = 0
  const tried = new Set<string>()
  const counts = Object.fromEntries(
    ['pass', 'reset', 'cutBody', 'stall', 'hold', 'status405', 'status500', 'status503', 'truncate', 'corrupt', 'unauthorized'].map(k => [
      k,
      0
    ])
  ) as Record<Fault, number>
  const stalled = new Set<ServerResponse>()
  /** Requests held back by 'hold': forwarded when the fault changes. */
  const held: Array<[IncomingMessage, ServerResponse]> = []
  const log: Array<{ method: string; path: string; fault: Fault }> = []
  const served = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    const f: Fault = (req.url ?? '').includes('/blobs/') ? (queue.shift() ?? firstTry(req) ?? mode) : 'pass'
    counts[f]++
    if ((req.url ?? '').includes('/blobs/')) log.push({ method: req.method ?? '', path: (req.url ?? '').split('?')[0], fault: f })
    switch (f) {
      case 'reset':
        req.socket.destroy()
        return
      case 'cutBody':
        cut(req)
        return
      case 'stall':
        stalled.add(res)
        return
      case 'hold':
        held.push([req, res])
        return
      case 'status405':
        req.resume()
        res.writeHead(405).end('injected')
        return
      case 'status500':
        res.writeHead(500).end('injected')
        return
      case 'status503':
        res.writeHead(503).end('injected')
        return
      case 'unauthorized':
        challenge(req, res)
        return
      default:
        forward(req, res, f)
    }
  })
  const firstTry = (req: IncomingMessage): Fault | undefined => {
    if (pattern.length === 0) return undefined
    const key = `${req.method ?? ''} ${req.url ?? ''} ${req.headers.range ?? ''}`
    if (tried.has(key)) return 'pass'
    tried.add(key)
    return pattern[turn++ % pattern.length]
  }
  /** An upload that dies in transit: upstream gets the headers and half the body, then both sides are cut. */
  const cut = (req: IncomingMessage): void => {
    const half = Math.floor(Number(req.headers['content-length'] ?? 0) / 2)
    const out = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } })
    out.on('error', () => {})
    let sent = 0
    req.on('data', (b: Buffer) => {
      if (sent >= half) return
      const part = b.subarray(0, half - sent)
      sent += part.length
      out.write(part)
      if (sent >= half)
        setTimeout(() => {
          out.destroy()
          req.socket.destroy()
        }, 50)
    })
  }
  /** As if the token had expired: the upstream's own challenge, got by asking without credentials. */
  const challenge = (req: IncomingMessage, res: ServerResponse): void => {
    const headers = { ...req.headers, host: up.host }
    delete headers.authorization
    const out = request({ host: up.hostname, port: up.port, method: 'HEAD', path: req.url, headers }, upRes => {
      upRes.resume()
      const www = upRes.headers['www-authenticate']
      res.writeHead(401, www === undefined ? {} : { 'www-authenticate': www }).end()
    })
    out.on('error', () => res.destroy())
    out.end()
    req.resume()
  }
  const forward = (req: IncomingMessage, res: ServerResponse, f: Fault): void => {
    const out = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      upRes => {
        const headers = { ...upRes.headers }
        if (f !== 'pass') delete headers['content-length']
        // Upload locations name the upstream; point them back here so the whole upload passes the proxy.
        if (typeof headers.location === 'string' && headers.location.startsWith(up.origin))
          headers.location = `http://${listenHost}:${port}${headers.location.slice(up.origin.length)}`
        res.writeHead(upRes.statusCode ?? 502, headers)
        if (f === 'pass') {
          const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1]
          if (digest !== undefined && req.method === 'GET')
            upRes.on('data', (b: Buffer) => served.set(digest, (served.get(digest) ?? 0) + b.length))
          upRes.pipe(res)
          return
        }
        const parts: Buffer[] = []
        upRes.on('data', (b: Buffer) => parts.push(b))
        upRes.on('end', () => {
          const body = Buffer.concat(parts)
          if (f === 'corrupt' && body.length > 0) {
            body[body.length >> 1] ^= 0xff
            res.end(body)
            return
          }
          res.write(body.subarray(0, body.length >> 1))
          res.socket?.destroy() // truncate
        })
      }
    )
    out.on('error', () => res.destroy())
    req.pipe(out)
  }
  let port = 0
  await new Promise<void>(resolve => server.listen(0, listenHost, resolve))
  port = (server.address() as AddressInfo).port
  const close = async (): Promise<void> => {
    for (const r of stalled) r.destroy()
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  t.teardown(close)
  return {
    host: `${listenHost}:${port}`,
    url: `http://${listenHost}:${port}`,
    set: f => {
      mode = f
      pattern = []
      if (f !== 'hold') for (const [req, res] of held.splice(0)) forward(req, res, 'pass')
    },
    firstTries: faults => {
      pattern = [...faults]
      turn = 0
      tried.clear()
    },
    next: (f, n = 1) => {
      for (let i = 0; i < n; i++) queue.push(f)
    },
    counts: () => ({ ...counts }),
    requests: () => [...log],
    blobBytes: () => new Map(served),
    close
  }
}
