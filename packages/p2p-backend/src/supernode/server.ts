import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { endFlushed } from '../io/piece-buffers.js'
import { Code, TOKEN_HEADER } from '../protocol/codes.js'
import { readJson, remoteIp, sendJson } from '../protocol/http.js'
import { HeartbeatRequest, PreheatRequest } from '../protocol/messages.js'
import { parseHttpRange } from '../protocol/pieces.js'
import { TASK_ID, taskIdOf } from '../protocol/task-id.js'
import { TokenVerifier } from '../protocol/token.js'
import { headerRecord } from './origin.js'
import { bad, describe, type Answer } from './answers.js'
import { SUPERNODE_CID, type Supernode } from './service.js'

/**
 * The supernode's HTTP face: Dragonfly v1's /peer/* API, the piece uploads
 * of its own copy, /_ping, /metrics and /preheat. Every malformed request
 * gets a 4xx with v1's `{code, msg}` body; nothing a caller sends can stop it.
 */
export class SupernodeServer {
  private readonly server: Server
  private readonly verifier = new TokenVerifier()

  constructor(private readonly sn: Supernode) {
    this.server = createServer((req, res) => {
      const t0 = process.hrtime.bigint()
      const path = (req.url ?? '/').split('?')[0]
      this.route(req, res)
        .catch((err: Error) => {
          sn.o.log.error({ path, err: err.message }, 'request failed')
          if (!res.headersSent) sendJson(res, 500, { code: Code.SystemError, msg: 'internal error' })
          else res.destroy()
        })
        .finally(() => {
          const label = path.startsWith('/peer/file/') ? '/peer/file' : path.startsWith('/preheat') ? '/preheat' : path
          sn.metrics.apiSeconds.observe({ path: KNOWN.has(label) ? label : 'other' }, Number(process.hrtime.bigint() - t0) / 1e9)
        })
    })
    this.server.keepAliveTimeout = 30_000
    this.server.headersTimeout = 20_000
    this.server.requestTimeout = 0
  }

  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    await this.verifier.trust(this.sn.signer.publicPem)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => resolve())
    })
    return (this.server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://supernode')
    } catch {
      return send(res, bad('request target is not a URL'))
    }
    const q = url.searchParams
    const p = url.pathname
    const method = req.method ?? 'GET'
    if (method === 'GET' && p === '/_ping') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('OK')
    if (method === 'GET' && p === '/metrics') {
      const body = await this.sn.metrics.registry.metrics()
      return void res.writeHead(200, { 'content-type': this.sn.metrics.registry.contentType }).end(body)
    }
    if (method === 'GET' && (p === '/api/v1/peers' || p === '/peers')) return sendJson(res, 200, this.sn.peerList())
    if (method === 'GET' && p.startsWith('/peer/file/')) return await this.upload(req, res, p.slice('/peer/file/'.length))
    if (method === 'POST' && p === '/peer/registry') {
      const body = await readJson(req)
      return send(res, body.ok ? await this.sn.register(body.value, remoteIp(req)) : bad(`register: ${body.why}`))
    }
    if (method === 'POST' && p === '/peer/heartbeat') {
      const body = await readJson(req)
      const hb = body.ok ? HeartbeatRequest.safeParse(body.value) : undefined
      if (hb === undefined || !hb.success) return send(res, bad(`heartbeat: ${hb === undefined ? 'body is not JSON' : describe(hb.error)}`))
      return send(res, this.sn.heartbeat(hb.data.IP ?? remoteIp(req), hb.data.port))
    }
    if (method === 'GET' && p === '/peer/task') {
      const ac = new AbortController()
      res.once('close', () => ac.abort())
      return send(res, await this.sn.pullTask(q, ac.signal))
    }
    if (method === 'GET' && p === '/peer/piece/suc') return send(res, this.sn.reportSuccess(q))
    if (method === 'GET' && p === '/peer/piece/error') return send(res, await this.sn.reportError(q))
    if (method === 'GET' && p === '/peer/service/down') return send(res, this.sn.serviceDown(q))
    if (method === 'POST' && p === '/preheat') return send(res, await this.preheat(req))
    if (method === 'GET' && p.startsWith('/preheat/')) return send(res, this.preheatStatus(p.slice('/preheat/'.length)))
    send(res, { status: 404, body: { code: Code.TargetNotFound, msg: `no API at ${method} ${p.slice(0, 128)}` } })
  }

  /** GET /peer/file/{task} with one piece's Range and a token the supernode signed for this peer and piece. */
  private async upload(req: IncomingMessage, res: ServerResponse, taskId: string): Promise<void> {
    if (!TASK_ID.test(taskId)) return send(res, bad('task id malformed'))
    const task = this.sn.registry.tasks.get(taskId)
    if (task === undefined) return send(res, { status: 404, body: { code: Code.TargetNotFound, msg: `task ${taskId} is not known here` } })
    const r = parseHttpRange(req.headers.range, task.length)
    if (r === undefined || r === 'none' || r.start % task.pieceSize !== 0 || r.end - r.start + 1 > task.pieceSize)
      return void res.writeHead(416, { 'content-range': `bytes */${task.length}` }).end()
    const n = r.start / task.pieceSize
    const token = req.headers[TOKEN_HEADER]
    const grant = typeof token === 'string' ? await this.verifier.verify(token) : undefined
    if (grant === undefined || grant.task !== taskId || grant.src !== SUPERNODE_CID || !grant.pieces.includes(n))
      return send(res, { status: 403, body: { code: Code.ParamError, msg: 'no valid upload token for this piece' } })
    const data = await this.sn.readPiece(taskId, n)
    if (data === undefined) return send(res, { status: 404, body: { code: Code.TargetNotFound, msg: `piece ${n} is not here yet` } })
    const body = data.subarray(0, r.end - r.start + 1)
    res.writeHead(206, {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      'content-range': `bytes ${r.start}-${r.end}/${task.length}`
    })
    res.write(body)
    await endFlushed(res)
    this.sn.buffers.give(data)
  }

  private async preheat(req: IncomingMessage): Promise<Answer> {
    const body = await readJson(req)
    const p = body.ok ? PreheatRequest.safeParse(body.value) : undefined
    if (p === undefined || !p.success) return bad(`preheat: ${p === undefined ? 'body is not JSON' : describe(p.error)}`)
    const filter = p.data.filter?.split('&').filter(Boolean)
    let id: string
    try {
      id = taskIdOf(p.data.url, { filter, identifier: p.data.identifier })
    } catch {
      return bad('preheat: url is not a URL')
    }
    const headers = headerRecord(Object.entries(p.data.headers ?? {}).map(([k, v]) => `${k}: ${v}`))
    return await this.sn.preheat({ id, url: p.data.url, headers })
  }

  private preheatStatus(id: string): Answer {
    const t = this.sn.registry.tasks.get(id)
    if (t === undefined) return { status: 404, body: { code: Code.TargetNotFound, msg: `no preheat ${id.slice(0, 80)}` } }
    const status = t.cdn.failed !== undefined ? 'FAILED' : t.cdn.complete ? 'SUCCESS' : 'RUNNING'
    return { status: 200, body: { ID: id, status, errorMsg: t.cdn.failed?.message } }
  }
}

const KNOWN = new Set([
  '/peer/registry',
  '/peer/task',
  '/peer/piece/suc',
  '/peer/piece/error',
  '/peer/service/down',
  '/peer/heartbeat',
  '/peer/file',
  '/_ping',
  '/metrics',
  '/preheat'
])

function send(res: ServerResponse, a: Answer): void {
  sendJson(res, a.status, a.body)
}
