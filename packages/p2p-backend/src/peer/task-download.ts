import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { ClientError, Code, TOKEN_HEADER } from '../protocol/codes.js'
import type { PieceTask, RegisterData } from '../protocol/messages.js'
import { parseRange } from '../protocol/pieces.js'
import type { StoredTask } from './piece-store.js'
import { SupernodeRefusal, SupernodesDown, type SupernodeClient } from './supernode-client.js'

/** Where a task's pieces come from and how it was registered; `register` runs again after a migration. */
export interface TaskContext {
  client: SupernodeClient
  agent: Dispatcher
  cid: string
  log: Logger
  register: (have?: string) => Promise<RegisterData>
}

const PIECE_TIMEOUT_MS = 30_000

/**
 * One task on this node: pieces pulled from the supernode's schedule and
 * fetched from the peers it names, each checked against the sha256 the
 * supernode took from its own copy before it is stored or offered. A whole
 * download runs until every piece is here; a range reader adds the pieces
 * it waits for (`ensure`), which are asked for first.
 */
export class TaskDownload {
  private readonly wants = new Set<number>()
  private running?: Promise<void>
  private whole = false
  failure?: Error
  /** Bytes this node fetched from peers, and from the supernode's copy. */
  readonly fetched = { peers: 0, supernode: 0, bad: 0 }

  constructor(
    readonly data: RegisterData,
    readonly stored: StoredTask,
    private readonly ctx: TaskContext
  ) {}

  get id(): string {
    return this.data.taskId
  }

  /** Registers again, with the pieces held here (a supernode that restarted or took over). */
  async reregister(): Promise<void> {
    await this.ctx.register(Buffer.from(this.stored.have).toString('base64'))
  }

  /** Resolves once pieces `pieces` are stored here; throws when the swarm cannot deliver them. */
  async ensure(pieces: number[]): Promise<void> {
    const missing = pieces.filter(n => !this.stored.has(n))
    if (missing.length === 0) return
    for (const n of missing) this.wants.add(n)
    this.stored.users++
    try {
      const all = Promise.all(missing.map(async n => await this.stored.until(n)))
      for (;;) {
        const loop = this.start()
        await Promise.race([all, loop])
        if (missing.every(n => this.stored.has(n))) return
        if (this.failure !== undefined) throw this.failure
      }
    } finally {
      this.stored.users--
    }
  }

  /** Fetches every piece; `progress` is told the bytes stored so far. */
  async all(progress?: (bytes: number) => void): Promise<void> {
    this.whole = true
    this.stored.users++
    try {
      while (!this.stored.complete) {
        await this.start(progress)
        if (this.failure !== undefined) throw this.failure
      }
    } finally {
      this.stored.users--
    }
  }

  /** The pull loop (one per task), started if not running. */
  private start(progress?: (bytes: number) => void): Promise<void> {
    // A new loop is a new try: an earlier one's failure (a supernode that did not answer) is not held against it.
    if (this.running === undefined) this.failure = undefined
    this.running ??= this.loop(progress).finally(() => {
      this.running = undefined
    })
    return this.running
  }

  private needed(): boolean {
    if (this.whole) return !this.stored.complete
    for (const n of this.wants) if (!this.stored.has(n)) return true
    return false
  }

  private async loop(progress?: (bytes: number) => void): Promise<void> {
    const inflight = new Set<Promise<void>>()
    let idle = 0
    let unanswered = 0
    try {
      while (this.needed()) {
        const want = this.whole ? undefined : [...this.wants].filter(n => !this.stored.has(n)).join(',')
        let ans: Awaited<ReturnType<SupernodeClient['pull']>>
        try {
          ans = await this.ctx.client.pull({ taskId: this.id, srcCid: this.ctx.cid, want, whole: this.whole ? 1 : undefined })
        } catch (err) {
          // Another supernode took over (or this one forgot the task): register there, with what is here.
          if (err instanceof SupernodeRefusal && err.code === Code.TargetNotFound) {
            await this.ctx.register(Buffer.from(this.stored.have).toString('base64'))
            continue
          }
          // No supernode answered: a busy one gets a few more tries before the task fails (the caller's fallback).
          if (err instanceof SupernodesDown && ++unanswered <= 3) {
            await sleep(300 * unanswered)
            continue
          }
          throw err
        }
        unanswered = 0
        this.ctx.log.debug(
          {
            task: this.id,
            node: this.ctx.client.node,
            answer: ans.kind,
            pieces: ans.kind === 'pieces' ? ans.pieces.map(p => `${p.pieceNum}<${p.cid}`) : undefined
          },
          'pull'
        )
        if (ans.kind === 'source-error') throw new Error(`the supernode's origin copy failed: ${ans.msg}`)
        if (ans.kind === 'finish' || ans.kind === 'wait') {
          if (!this.needed()) break
          // A supernode that answers at once (no long-poll, or a finish it was wrong about) is not asked in a tight loop.
          if (++idle > 600) throw new Error('the supernode schedules nothing for this task')
          await sleep(Math.min(500, 10 * idle))
          continue
        }
        idle = 0
        for (const p of ans.pieces) {
          const f = this.fetchPiece(p)
            .then(() => progress?.(this.stored.bytes))
            .finally(() => inflight.delete(f))
          inflight.add(f)
        }
      }
      await Promise.all(inflight)
    } catch (err) {
      await Promise.allSettled(inflight)
      this.failure = err as Error
      this.ctx.log.warn({ task: this.id, err: (err as Error).message }, 'P2P download failed')
    }
  }

  /** One scheduled piece: fetched, checked against the supernode's digest, stored, reported. */
  private async fetchPiece(p: PieceTask): Promise<void> {
    const range = parseRange(p.range)
    const n = p.pieceNum
    const t0 = Date.now()
    const report = { taskId: this.id, cid: this.ctx.cid, dstCid: p.cid, pieceRange: p.range }
    const error = async (errorType: string, extra: Record<string, string> = {}): Promise<void> => {
      await this.ctx.client
        .reportError({ taskId: this.id, srcCid: this.ctx.cid, dstCid: p.cid, range: p.range, errorType, ...extra })
        .catch(() => {})
    }
    if (range === undefined || range.start !== n * this.stored.pieceSize || range.end >= this.stored.length) {
      await error('INVALID_PIECE')
      return
    }
    if (this.stored.has(n)) {
      await this.ctx.client.reportSuccess({ ...report, cost: 1 }).catch(() => {})
      return
    }
    const size = range.end - range.start + 1
    let piece: { chunks: Buffer[]; sha256: string }
    try {
      piece = await this.get(p, size)
    } catch (err) {
      this.ctx.log.debug({ task: this.id, piece: n, from: p.cid, err: (err as Error).message }, 'piece fetch failed')
      await error(ClientError.FileNotExist)
      return
    }
    const got = `sha256:${piece.sha256}`
    if (got !== p.pieceDigest) {
      this.fetched.bad++
      this.ctx.log.warn({ task: this.id, piece: n, from: p.cid }, 'piece refused: its sha256 is not the supernode copy')
      await error(ClientError.DigestMismatch, { realMd5: got, expectMd5: p.pieceDigest })
      return
    }
    await this.stored.write(n, piece.chunks)
    if (p.cid === 'supernode') this.fetched.supernode += size
    else this.fetched.peers += size
    await this.ctx.client.reportSuccess({ ...report, cost: Math.max(1, Date.now() - t0) }).catch(() => {})
  }

  /**
   * The piece's bytes as they came off the socket (no copy: they are written
   * with writev) and their sha256, hashed as they arrive; from the peer (or
   * the supernode) the schedule named, never more than the piece.
   */
  private async get(p: PieceTask, size: number): Promise<{ chunks: Buffer[]; sha256: string }> {
    const host = p.peerIp === '' ? this.ctx.client.node : `${p.peerIp.includes(':') ? `[${p.peerIp}]` : p.peerIp}:${p.peerPort}`
    const res = await this.ctx.agent.request({
      origin: `http://${host}`,
      path: p.path,
      method: 'GET',
      headers: { range: `bytes=${p.range}`, [TOKEN_HEADER]: p.token },
      signal: AbortSignal.timeout(PIECE_TIMEOUT_MS)
    })
    if (res.statusCode !== 206) {
      await res.body.dump()
      throw new Error(`${host} answered ${res.statusCode}`)
    }
    const chunks: Buffer[] = []
    const h = createHash('sha256')
    let got = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (got + chunk.length > size) {
        res.body.destroy()
        throw new Error(`${host} sent more than the piece`)
      }
      h.update(chunk)
      chunks.push(chunk)
      got += chunk.length
    }
    if (got !== size) throw new Error(`${host} sent ${got} of ${size} bytes`)
    return { chunks, sha256: h.digest('hex') }
  }
}

export const pieceAgent = (): Dispatcher => new Agent({ connect: { timeout: 3000 }, connections: 8, keepAliveTimeout: 10_000 })
