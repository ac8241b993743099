import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { choosePieceSize } from '../protocol/pieces.js'
import { blobDigestOf } from '../protocol/task-id.js'
import { CdnTask } from './cdn.js'
import type { SupernodeMetrics } from './metrics.js'
import type { Origin, OriginHead } from './origin.js'
import type { SharedState } from './shared-state.js'
import type { Task } from './swarm.js'

/** Why a caller gets no task: the origin wants credentials (with its challenge), or refused the URL. */
export class OriginRefusal extends Error {
  constructor(
    readonly status: number,
    readonly wwwAuthenticate?: string
  ) {
    super(status === 401 || status === 403 ? `the origin refused the caller's credentials (${status})` : `the origin answered ${status}`)
  }
}

const CRED_TTL_MS = 60_000
const CRED_CACHE_MAX = 10_000
/** Headers that carry who the caller is: without them, a private origin must say no. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie']

export interface TaskSpec {
  id: string
  url: string
  headers: Record<string, string>
  pieceSizeHint?: number
  digest?: string
}

/**
 * The tasks a supernode knows, made once each (concurrent registrations of
 * a new task share one origin HEAD), and the origin's word on each caller's
 * credentials for a private task, cached briefly per task and credential
 * hash (never the credential itself).
 */
export class TaskRegistry {
  readonly tasks = new Map<string, Task>()
  private readonly making = new Map<string, Promise<Task>>()
  private readonly creds = new Map<string, { status: number; www?: string; until: number }>()

  constructor(
    private readonly o: {
      dir: string
      origin: Origin
      metrics: SupernodeMetrics
      log: Logger
      changed: (taskId: string) => void
      shared?: SharedState
    }
  ) {}

  /** The task, made on first use; throws OriginRefusal when the caller may not have it. */
  async obtain(spec: TaskSpec): Promise<Task> {
    const existing = this.tasks.get(spec.id)
    if (existing !== undefined) {
      if (existing.private) await this.checkCaller(existing, spec.headers)
      existing.headers = spec.headers
      existing.lastUsed = Date.now()
      return existing
    }
    let p = this.making.get(spec.id)
    if (p === undefined) {
      p = this.make(spec).finally(() => this.making.delete(spec.id))
      this.making.set(spec.id, p)
      return await p
    }
    const t = await p
    if (t.private) await this.checkCaller(t, spec.headers)
    return t
  }

  async drop(t: Task): Promise<void> {
    this.tasks.delete(t.id)
    await t.cdn.close()
    this.o.metrics.tasks.set(this.tasks.size)
  }

  private async make(spec: TaskSpec): Promise<Task> {
    const anonymous = Object.fromEntries(Object.entries(spec.headers).filter(([k]) => !CREDENTIAL_HEADERS.includes(k)))
    const anon = await this.head(spec.url, anonymous)
    const isPrivate = anon.status === 401 || anon.status === 403
    const hasCreds = CREDENTIAL_HEADERS.some(k => spec.headers[k] !== undefined)
    const head = isPrivate && hasCreds ? await this.head(spec.url, spec.headers) : anon
    if (head.status !== 200 || head.length === undefined)
      throw new OriginRefusal(head.status === 200 ? 502 : head.status, head.wwwAuthenticate)
    if (isPrivate) this.remember(spec.id, spec.headers, head)
    const pieceSize = choosePieceSize(head.length, spec.pieceSizeHint)
    const cdn = new CdnTask({
      id: spec.id,
      url: spec.url,
      length: head.length,
      pieceSize,
      dir: this.o.dir,
      origin: this.o.origin,
      headers: () => task.headers,
      digest: blobDigestOf(spec.url) ?? spec.digest,
      metrics: this.o.metrics,
      log: this.o.log
    })
    await cdn.open()
    const shared = this.o.shared
    if (shared !== undefined) {
      for (const [n, hex] of await shared.digests(spec.id)) cdn.adopt(n, hex)
      cdn.on('piece', (n: number) => shared.publishDigest(spec.id, n, cdn.digests[n]!))
    }
    cdn.on('piece', () => this.o.changed(spec.id))
    cdn.on('failed', () => this.o.changed(spec.id))
    const task: Task = {
      id: spec.id,
      url: spec.url,
      length: head.length,
      pieceSize,
      count: cdn.count,
      private: isPrivate,
      headers: spec.headers,
      cdn,
      peers: new Map(),
      excluded: new Set(shared === undefined ? [] : await shared.excluded(spec.id)),
      copies: new Uint16Array(cdn.count),
      fromCdn: new Uint16Array(cdn.count),
      peerUploaded: 0,
      lastUsed: Date.now()
    }
    this.tasks.set(spec.id, task)
    this.o.metrics.tasks.set(this.tasks.size)
    this.o.log.info({ task: spec.id, length: head.length, pieceSize, private: isPrivate }, 'task made')
    return task
  }

  private async head(url: string, headers: Record<string, string>): Promise<OriginHead> {
    try {
      return await this.o.origin.head(url, headers)
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'origin unreachable')
      throw new OriginRefusal(504)
    }
  }

  /** The origin's answer for these credentials on this task (cached a minute): 200, or OriginRefusal. */
  private async checkCaller(t: Task, headers: Record<string, string>): Promise<void> {
    const key = credKey(t.id, headers)
    let c = this.creds.get(key)
    if (c === undefined || c.until < Date.now()) {
      const h = await this.head(t.url, headers)
      c = this.remember(t.id, headers, h)
    }
    if (c.status !== 200) throw new OriginRefusal(c.status, c.www)
  }

  private remember(id: string, headers: Record<string, string>, h: OriginHead): { status: number; www?: string; until: number } {
    if (this.creds.size >= CRED_CACHE_MAX) this.creds.clear()
    const c = { status: h.status, www: h.wwwAuthenticate, until: Date.now() + CRED_TTL_MS }
    this.creds.set(credKey(id, headers), c)
    return c
  }
}

/** A cache key for a caller's credentials on a task: a hash, so no credential is ever kept as a key. */
function credKey(taskId: string, headers: Record<string, string>): string {
  const h = createHash('sha256').update(taskId)
  for (const k of CREDENTIAL_HEADERS) h.update(`\n${k}:${headers[k] ?? ''}`)
  return h.digest('hex')
}
