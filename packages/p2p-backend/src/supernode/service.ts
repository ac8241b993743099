import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { PieceBuffers } from '../io/piece-buffers.js'
import { ClientError, Code, PieceResult } from '../protocol/codes.js'
import { RegisterRequest, type PieceTask, type RegisterData } from '../protocol/messages.js'
import { parseRange } from '../protocol/pieces.js'
import { TASK_ID, taskIdOf } from '../protocol/task-id.js'
import { TokenSigner } from '../protocol/token.js'
import { type Answer, bad, describe, notFound, ok, parseWant, refused } from './answers.js'
import { SupernodeMetrics } from './metrics.js'
import { pieceTasks } from './piece-tasks.js'
import { headerRecord, Origin } from './origin.js'
import { DEFAULT_LIMITS, Scheduler, type Assignment, type SchedulerLimits } from './scheduler.js'
import { dropPeerTask, markHave, newPeer, newPeerTask, recordUpload, release, type Peer, type PeerTask, type Task } from './swarm.js'
import { SharedState } from './shared-state.js'
import { OriginRefusal, TaskRegistry, type TaskSpec } from './tasks.js'
import { TaskWaiters } from './waiters.js'

export interface SupernodeOptions {
  home: string
  log: Logger
  limits?: Partial<SchedulerLimits>
  /** How long /peer/task holds a request when nothing can be scheduled yet (long-poll). */
  longPollMs?: number
  signer?: TokenSigner
  /** Redis URL: share the token key, piece digests and exclusions with other supernodes. */
  redis?: string
  /** A task no peer has asked about for this long is dropped with its copy (v1's task-expire-time; default 3 min). */
  taskExpireMs?: number
  /** PEM of extra CAs for origins with a private CA (`--ca-file`). */
  originCa?: string
}

/** Reports of bad pieces (proved by the supernode's own copy) after which a peer is evicted everywhere. */
const EVICT_AFTER = 3
/** An assignment not reported for this long frees its slots (a peer gives up on a piece after 30 s). */
const INFLIGHT_TIMEOUT_MS = 45_000
export const SUPERNODE_CID = 'supernode'

/**
 * The supernode's API operations (Dragonfly v1's /peer/* semantics): tasks
 * made and copied once by the CDN, peers and their pieces, scheduling with
 * long-polls, signed upload tokens, and the exclusion of peers whose bad
 * pieces the supernode's own copy proves.
 */
export class Supernode {
  readonly metrics = new SupernodeMetrics()
  readonly registry: TaskRegistry
  readonly peers = new Map<string, Peer>()
  readonly self: Peer = newPeer(SUPERNODE_CID, '', 0, Infinity)
  readonly limits: SchedulerLimits
  readonly waiters = new TaskWaiters()
  /** Buffers for pieces read from the CDN copies and sent to peers. */
  readonly buffers = new PieceBuffers(16)
  private readonly origin: Origin
  private readonly scheduler: Scheduler
  private readonly evicted = new Map<string, number>()
  private timer?: NodeJS.Timeout

  private constructor(
    readonly o: SupernodeOptions,
    readonly signer: TokenSigner,
    private readonly shared?: SharedState
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...o.limits }
    this.origin = new Origin({ ca: o.originCa })
    this.scheduler = new Scheduler(this.limits, this.self, SUPERNODE_CID)
    this.registry = new TaskRegistry({
      dir: join(o.home, 'cdn'),
      origin: this.origin,
      metrics: this.metrics,
      log: o.log,
      changed: id => this.waiters.notify(id),
      shared
    })
  }

  static async start(o: SupernodeOptions): Promise<Supernode> {
    await mkdir(join(o.home, 'cdn'), { recursive: true })
    const shared = o.redis === undefined ? undefined : new SharedState(o.redis, o.log)
    const signer = o.signer ?? (await shared?.signer()) ?? (await TokenSigner.generate())
    const s = new Supernode(o, signer, shared)
    s.timer = setInterval(() => s.expire(Date.now()), Math.max(200, Math.floor(s.limits.peerExpireMs / 3)))
    s.timer.unref()
    return s
  }

  async register(body: unknown, remoteIp: string): Promise<Answer> {
    const parsed = RegisterRequest.safeParse(body)
    if (!parsed.success) return bad(`register: ${describe(parsed.error)}`)
    const r = parsed.data
    let url: URL
    try {
      url = new URL(r.rawURL)
    } catch {
      return bad('register: rawURL is not a URL')
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad(`register: rawURL scheme ${url.protocol} (want http or https)`)
    const ip = r.IP ?? remoteIp
    const peerId = `${ip}:${r.port}`
    if ((this.evicted.get(peerId) ?? 0) > Date.now())
      return { status: 403, body: { code: Code.PeerLimited, msg: `peer ${peerId} is evicted` } }
    const id = taskIdOf(r.rawURL, { filter: r.filter, identifier: r.identifier })
    let task: Task
    try {
      task = await this.registry.obtain({
        id,
        url: r.rawURL,
        headers: headerRecord(r.headers),
        pieceSizeHint: r.pieceSizeHint,
        digest: r.digest
      })
    } catch (err) {
      if (!(err instanceof OriginRefusal)) throw err
      return refused(err, true)
    }
    const peer = this.peer(peerId, ip, r.port)
    let pt = task.peers.get(r.cID)
    if (pt === undefined) {
      pt = newPeerTask(r.cID, peer, task.count, r.path ?? `/peer/file/${id}`, r.pieceSizeHint === undefined)
      task.peers.set(r.cID, pt)
    }
    if (r.have !== undefined) {
      const have = Buffer.from(r.have, 'base64')
      for (let n = 0; n < Math.min(have.length, task.count); n++) if (have[n] === 1) markHave(task, pt, n)
    }
    if (pt.whole) task.cdn.streamAll()
    this.waiters.notify(task.id)
    const data: RegisterData = {
      taskId: id,
      fileLength: task.length,
      pieceSize: task.pieceSize,
      cdnSource: 'supernode',
      tokenKey: this.signer.publicPem,
      peerId
    }
    return ok(data)
  }

  /** POST /preheat: the task made and copied by the CDN before anyone asks for it. */
  async preheat(spec: TaskSpec): Promise<Answer> {
    try {
      const task = await this.registry.obtain(spec)
      task.cdn.streamAll()
      return { status: 200, body: { ID: task.id } }
    } catch (err) {
      if (!(err instanceof OriginRefusal)) throw err
      return refused(err, false)
    }
  }

  /** GET /peer/task: report the last piece (optional), then the next pieces to fetch, held up to longPollMs. */
  async pullTask(q: URLSearchParams, signal?: AbortSignal): Promise<Answer> {
    const found = this.find(q.get('taskId'), q.get('srcCid'))
    if ('status' in found) return found
    const { task, pt } = found
    pt.peer.lastSeen = Date.now()
    pt.lastPull = Date.now()
    const last = parseRange(q.get('range'))
    if (last !== undefined) this.settle(task, pt, last.start, Number(q.get('result')) === PieceResult.Success, Number(q.get('cost') ?? 0))
    // A range reader that now wants the whole file (a full pull after lazy reads).
    if (q.get('whole') === '1' && !pt.whole) {
      pt.whole = true
      task.cdn.streamAll()
    }
    const want = q.get('want')
    if (want !== null) {
      const pieces = parseWant(want, task.count)
      if (pieces === undefined) return bad(`want ${JSON.stringify(want.slice(0, 64))}: want piece numbers below ${task.count}, as 1,2,5-9`)
      pt.wants = pieces.filter(n => pt.have[n] === 0)
    }
    const deadline = Date.now() + (this.o.longPollMs ?? 5000)
    for (;;) {
      if (task.cdn.failed !== undefined)
        return { status: 200, body: { code: Code.SourceError, msg: `the origin copy failed: ${task.cdn.failed.message}` } }
      if (this.done(task, pt)) return { status: 200, body: { code: Code.PeerFinish, data: { fileLength: task.length, md5: '' } } }
      const got = this.scheduler.schedule(task, pt, Date.now())
      if (got.length > 0) return { status: 200, body: { code: Code.PeerContinue, data: await this.answerPieces(task, pt, got) } }
      const left = deadline - Date.now()
      if (left <= 0 || signal?.aborted === true) return { status: 200, body: { code: Code.PeerWait, msg: 'no piece can be fetched yet' } }
      await this.waiters.wait(task.id, left, signal)
    }
  }

  private async answerPieces(task: Task, pt: PeerTask, got: Assignment[]): Promise<PieceTask[]> {
    const fromSelf = got.filter(a => a.from === this.self).length
    this.metrics.piecesScheduled.inc({ source: 'peer' }, got.length - fromSelf)
    this.metrics.piecesScheduled.inc({ source: 'supernode' }, fromSelf)
    return await pieceTasks(this.signer, task, pt, got)
  }

  /** GET /peer/piece/suc: `cid` has the piece `pieceRange`, fetched from `dstCid`. */
  reportSuccess(q: URLSearchParams): Answer {
    const found = this.find(q.get('taskId'), q.get('cid'))
    if ('status' in found) return found
    const r = parseRange(q.get('pieceRange'))
    if (r === undefined || r.start % found.task.pieceSize !== 0 || r.start >= found.task.length)
      return bad('pieceRange: want start-end of one piece')
    this.settle(found.task, found.pt, r.start, true, Number(q.get('cost') ?? 0))
    return ok()
  }

  /** GET /peer/piece/error: a piece from `dstCid` failed; a bad digest is checked against the supernode's own copy. */
  async reportError(q: URLSearchParams): Promise<Answer> {
    const found = this.find(q.get('taskId'), q.get('srcCid'))
    if ('status' in found) return found
    const { task, pt } = found
    const r = parseRange(q.get('range'))
    if (r === undefined || r.start % task.pieceSize !== 0 || r.start >= task.length) return bad('range: want start-end of one piece')
    const n = r.start / task.pieceSize
    const from = pt.inflight.get(n)?.from ?? task.peers.get(q.get('dstCid') ?? '')?.peer
    this.settle(task, pt, r.start, false, 0)
    if (from === undefined || q.get('errorType') !== ClientError.DigestMismatch) return ok()
    this.metrics.pieceReports.inc({ result: 'bad-digest' })
    // The supernode's own copy is the judge: fetched first if this supernode never held the piece.
    if ((await task.cdn.fetched(n, 30_000)) && (await task.cdn.intact(n))) this.blame(task, from)
    else this.o.log.error({ task: task.id, piece: n }, "the supernode's own copy of a piece is bad")
    return ok()
  }

  /** GET /peer/service/down: the peer leaves the task; its pieces are no longer offered. */
  serviceDown(q: URLSearchParams): Answer {
    const found = this.find(q.get('taskId'), q.get('cid'))
    if ('status' in found) return found
    dropPeerTask(found.task, found.pt)
    this.waiters.notify(found.task.id)
    return ok()
  }

  /** GET /api/v1/peers (v1's peer list): what the scheduler knows of each peer. */
  peerList(): Array<Record<string, unknown>> {
    return [...this.peers.values()].map(p => ({
      ID: p.id,
      IP: p.ip,
      port: p.port,
      uploading: p.uploading,
      uploadedBytes: p.uploaded,
      succeeded: p.ok,
      failed: p.failed,
      badPieces: p.reports,
      lastSeen: new Date(p.lastSeen).toISOString()
    }))
  }

  heartbeat(ip: string, port: number): Answer {
    const p = this.peers.get(`${ip}:${port}`)
    if (p !== undefined) p.lastSeen = Date.now()
    return ok({ needRegister: p === undefined })
  }

  /** The token holder may read piece `n` of `taskId` from the supernode's copy; give the buffer back to `buffers` once sent. */
  async readPiece(taskId: string, n: number): Promise<Buffer | undefined> {
    const task = this.registry.tasks.get(taskId)
    if (task === undefined || !task.cdn.has(n)) return undefined
    const b = await task.cdn.read(n, this.buffers.take(task.cdn.o.pieceSize))
    this.metrics.uploadBytes.inc(b.length)
    return b
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    this.waiters.wakeAll()
    for (const t of [...this.registry.tasks.values()]) await this.registry.drop(t)
    await this.origin.close()
    await this.shared?.close()
  }

  private find(taskId: string | null, cid: string | null): { task: Task; pt: PeerTask } | Answer {
    if (taskId === null || !TASK_ID.test(taskId)) return bad('taskId: missing or malformed')
    if (cid === null || cid === '') return bad('cid: missing')
    const task = this.registry.tasks.get(taskId)
    if (task === undefined) return notFound(`task ${taskId} is not known here`)
    const pt = task.peers.get(cid)
    if (pt === undefined) return notFound(`peer ${cid} has not registered for task ${taskId}`)
    task.lastUsed = Date.now()
    return { task, pt }
  }

  private peer(id: string, ip: string, port: number): Peer {
    let p = this.peers.get(id)
    if (p === undefined) {
      p = newPeer(id, ip, port, Date.now())
      this.peers.set(id, p)
      this.metrics.peers.set(this.peers.size)
    }
    p.lastSeen = Date.now()
    return p
  }

  private done(task: Task, pt: PeerTask): boolean {
    return pt.whole ? pt.haveCount === task.count : pt.wants.every(n => pt.have[n] === 1)
  }

  /** The outcome of piece at `start` for `pt`: slots freed, parent's record, and on success one more copy. */
  private settle(task: Task, pt: PeerTask, start: number, success: boolean, costMs: number): void {
    const n = Math.floor(start / task.pieceSize)
    if (n >= task.count) return
    const a = release(task, pt, n)
    if (a !== undefined) recordUpload(task, a.from, n, success, costMs, a.from === this.self)
    this.metrics.pieceReports.inc({ result: success ? 'success' : 'failure' })
    if (success) markHave(task, pt, n)
    this.waiters.notify(task.id)
  }

  /** `from` sent a bad piece the supernode's copy proves good: out of this task for everyone; evicted after repeats. */
  private blame(task: Task, from: Peer): void {
    if (from.id === SUPERNODE_CID) return
    task.excluded.add(from.id)
    this.shared?.exclude(task.id, from.id)
    this.metrics.evictions.inc({ scope: 'task' })
    from.reports++
    this.o.log.warn({ task: task.id, peer: from.id, reports: from.reports }, 'peer excluded from task: it sent a bad piece')
    if (from.reports >= EVICT_AFTER) this.evict(from, 'repeated bad pieces')
  }

  private evict(p: Peer, why: string): void {
    this.evicted.set(p.id, Date.now() + 10 * 60_000)
    this.metrics.evictions.inc({ scope: 'all' })
    this.o.log.warn({ peer: p.id, why }, 'peer evicted')
    this.forget(p)
  }

  private forget(p: Peer): void {
    for (const t of this.registry.tasks.values())
      for (const pt of [...t.peers.values()])
        if (pt.peer === p) {
          dropPeerTask(t, pt)
          this.waiters.notify(t.id)
        }
    this.peers.delete(p.id)
    this.metrics.peers.set(this.peers.size)
  }

  /** Peers not heard from leave the schedule; assignments never reported free their slots; unused tasks go. */
  private expire(now: number): void {
    for (const p of [...this.peers.values()]) if (now - p.lastSeen > this.limits.peerExpireMs) this.forget(p)
    const taskExpire = this.o.taskExpireMs ?? 180_000
    for (const t of [...this.registry.tasks.values()])
      if (t.peers.size === 0 && !t.cdn.busy && now - t.lastUsed > taskExpire) {
        this.o.log.info({ task: t.id }, 'task expired: its copy is removed')
        void this.registry.drop(t)
      }
    for (const t of this.registry.tasks.values())
      for (const pt of t.peers.values())
        for (const [n, a] of [...pt.inflight])
          if (now - a.at > INFLIGHT_TIMEOUT_MS) {
            release(t, pt, n)
            a.from.failed++
            this.waiters.notify(t.id)
          }
  }
}
