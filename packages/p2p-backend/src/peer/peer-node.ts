import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { PieceBuffers } from '../io/piece-buffers.js'
import { Code } from '../protocol/codes.js'
import { sendJson } from '../protocol/http.js'
import type { RegisterData } from '../protocol/messages.js'
import { taskIdOf } from '../protocol/task-id.js'
import { TokenVerifier } from '../protocol/token.js'
import { PieceStore } from './piece-store.js'
import { RateLimiter } from './rate-limiter.js'
import { SupernodeClient } from './supernode-client.js'
import { pieceAgent, TaskDownload } from './task-download.js'
import { Uploader } from './uploader.js'

export interface PeerNodeOptions {
  /** Supernodes, in the order to try them (`--node`). */
  nodes: string[]
  home: string
  /** Disk for pieces; least recently used tasks go first beyond it. */
  maxBytes?: number
  port: number
  listen?: string
  /** The address peers reach this node at (default: the one that reaches the supernode). */
  ip?: string
  /** Upload bytes per second (`--totallimit`). */
  totalLimit?: number
  maxUploads?: number
  heartbeatMs?: number
  log: Logger
  /** Other requests to this node's port (dfdaemon's blob face, the registry mirror). */
  extra?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>
  /** CONNECT requests (the registry mirror's forward proxy); refused with 405 without it. */
  connect?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
}

export interface TaskSpec {
  url: string
  headers?: string[]
  filter?: string[]
  identifier?: string
  digest?: string
  /** A range reader: 1 MiB pieces, fetched only when asked for. */
  lazy?: boolean
}

/**
 * A node of the swarm (dfdaemon, or dfget while it runs): its pieces on
 * disk, an HTTP port that uploads them to scheduled peers, the tasks it
 * downloads, and heartbeats that keep it in the supernode's schedule.
 */
export class PeerNode {
  readonly client: SupernodeClient
  readonly store: PieceStore
  readonly verifier = new TokenVerifier()
  readonly uploader: Uploader
  readonly agent: Dispatcher = pieceAgent()
  /** Piece buffers for this node's uploads and its local clients' reads. */
  readonly buffers = new PieceBuffers(16)
  private readonly tasks = new Map<string, TaskDownload>()
  /** Callers whose credentials the supernode accepted for a task lately (task id + credential hash). */
  private readonly accepted = new Map<string, number>()
  private readonly server: Server
  private timer?: NodeJS.Timeout
  ip = ''
  port = 0

  private constructor(readonly o: PeerNodeOptions) {
    this.client = new SupernodeClient(o.nodes)
    this.store = new PieceStore(join(o.home, 'pieces'), o.maxBytes ?? 20 * 1024 ** 3)
    this.uploader = new Uploader({
      store: this.store,
      verifier: this.verifier,
      peerId: () => this.peerId,
      maxUploads: o.maxUploads ?? 5,
      buffers: this.buffers,
      limiter: o.totalLimit === undefined ? undefined : new RateLimiter(o.totalLimit)
    })
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: Error) => {
        o.log.error({ err: err.message }, 'request failed')
        if (!res.headersSent) sendJson(res, 500, { code: Code.SystemError, msg: 'internal error' })
        else res.destroy()
      })
    })
    this.server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (o.connect !== undefined) return o.connect(req, socket, head)
      socket.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    })
    // A malformed request line or header: one status line naming this daemon's refusal, and the connection closed.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return void socket.destroy()
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
      socket.end(`HTTP/1.1 ${status}\r\nX-Dragonfly-Error-Type: proxy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    })
  }

  get peerId(): string {
    return `${this.ip}:${this.port}`
  }

  static async start(o: PeerNodeOptions): Promise<PeerNode> {
    const n = new PeerNode(o)
    await n.store.init()
    await new Promise<void>((resolve, reject) => {
      n.server.once('error', reject)
      n.server.listen(o.port, o.listen ?? '0.0.0.0', () => resolve())
    })
    n.port = (n.server.address() as AddressInfo).port
    n.ip = o.ip ?? (await n.client.localIp().catch(() => '127.0.0.1'))
    const every = o.heartbeatMs ?? 5000
    n.timer = setInterval(() => void n.beat(), every)
    n.timer.unref()
    return n
  }

  /** The task for `spec` on this node: registered with the supernode (credentials checked there), pieces kept here. */
  async task(spec: TaskSpec): Promise<TaskDownload> {
    const id = taskIdOf(spec.url, { filter: spec.filter, identifier: spec.identifier })
    const cid = `${this.peerId}-${id.slice(-12)}`
    const register = async (have?: string): Promise<RegisterData> => {
      const data = await this.client.register({
        rawURL: spec.url,
        cID: cid,
        IP: this.ip,
        port: this.port,
        path: `/peer/file/${id}`,
        headers: spec.headers,
        filter: spec.filter,
        identifier: spec.identifier,
        digest: spec.digest as never,
        pieceSizeHint: spec.lazy === true ? 1024 * 1024 : undefined,
        have,
        version: '0.1.0',
        callSystem: 'nydusjs'
      })
      await this.verifier.trust(data.tokenKey)
      return data
    }
    // A new caller registers even for a task here: the supernode checks its credentials for a private origin.
    const key = `${id} ${createHash('sha256')
      .update(JSON.stringify(spec.headers ?? []))
      .digest('hex')}`
    const known = this.tasks.get(id)
    if (known !== undefined && known.failure === undefined && (this.accepted.get(key) ?? 0) > Date.now()) return known
    const data = await register(known === undefined ? undefined : Buffer.from(known.stored.have).toString('base64'))
    if (this.accepted.size > 10_000) this.accepted.clear()
    this.accepted.set(key, Date.now() + 30_000)
    const existing = this.tasks.get(id)
    if (existing !== undefined && existing.failure === undefined) return existing
    const stored = await this.store.obtain(id, data.fileLength, data.pieceSize)
    const t = new TaskDownload(data, stored, {
      client: this.client,
      agent: this.agent,
      cid,
      log: this.o.log,
      register
    })
    this.tasks.set(id, t)
    for (const gone of await this.store.shrink()) {
      const d = this.tasks.get(gone)
      this.tasks.delete(gone)
      if (d !== undefined) await this.client.serviceDown(gone, `${this.peerId}-${gone.slice(-12)}`).catch(() => {})
    }
    return t
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    for (const [id] of this.tasks) await this.client.serviceDown(id, `${this.peerId}-${id.slice(-12)}`).catch(() => {})
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
    await this.store.close()
    await this.agent.close()
    await this.client.close()
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method === 'GET' && path.startsWith('/peer/file/'))
      return await this.uploader.handle(req, res, path.slice('/peer/file/'.length))
    if (req.method === 'GET' && path === '/_ping') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('OK')
    if (this.o.extra !== undefined && (await this.o.extra(req, res))) return
    sendJson(res, 404, { code: Code.TargetNotFound, msg: `no API at ${String(req.method)} ${path.slice(0, 128)}` })
  }

  /** Keeps this node in the schedule; a supernode that forgot it (a restart, a migration) gets every task again. */
  private async beat(): Promise<void> {
    try {
      const before = this.client.node
      const again = await this.client.heartbeat(this.ip, this.port)
      if (again || this.client.node !== before) for (const t of this.tasks.values()) await t.reregister().catch(() => {})
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'heartbeat failed')
    }
  }
}
