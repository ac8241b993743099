import type { IncomingMessage, ServerResponse } from 'node:http'
import { drained, endFlushed, type PieceBuffers } from '../io/piece-buffers.js'
import { Code, TOKEN_HEADER } from '../protocol/codes.js'
import { sendJson } from '../protocol/http.js'
import { parseHttpRange } from '../protocol/pieces.js'
import { TASK_ID } from '../protocol/task-id.js'
import type { TokenVerifier } from '../protocol/token.js'
import type { PieceStore } from './piece-store.js'
import type { RateLimiter } from './rate-limiter.js'

const CHUNK = 64 * 1024

export interface UploaderStats {
  bytes: number
  refused: number
  busy: number
}

/**
 * GET /peer/file/{task}: one piece (a piece-aligned Range) to a peer that
 * holds a token the supernode signed for this node, that peer and that piece;
 * 403 otherwise, 503 with Retry-After when every upload slot is taken, and
 * no faster than the node's --totallimit.
 */
export class Uploader {
  private active = 0
  readonly stats: UploaderStats = { bytes: 0, refused: 0, busy: 0 }

  constructor(
    private readonly o: {
      store: PieceStore
      verifier: TokenVerifier
      peerId: () => string
      maxUploads: number
      limiter?: RateLimiter
      buffers: PieceBuffers
    }
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse, taskId: string): Promise<void> {
    if (!TASK_ID.test(taskId)) return sendJson(res, 400, { code: Code.ParamError, msg: 'task id malformed' })
    const t = this.o.store.get(taskId)
    if (t === undefined) return sendJson(res, 404, { code: Code.TargetNotFound, msg: `task ${taskId} is not on this node` })
    const r = parseHttpRange(req.headers.range, t.length)
    if (r === undefined || r === 'none' || r.start % t.pieceSize !== 0 || r.end - r.start + 1 > t.pieceSize)
      return void res.writeHead(416, { 'content-range': `bytes */${t.length}` }).end()
    const n = r.start / t.pieceSize
    const token = req.headers[TOKEN_HEADER]
    const grant = typeof token === 'string' ? await this.o.verifier.verify(token) : undefined
    if (grant === undefined || grant.task !== taskId || grant.src !== this.o.peerId() || !grant.pieces.includes(n)) {
      this.stats.refused++
      return sendJson(res, 403, { code: Code.ParamError, msg: 'no valid upload token for this piece' })
    }
    if (!t.has(n)) return sendJson(res, 404, { code: Code.TargetNotFound, msg: `piece ${n} is not on this node` })
    if (this.active >= this.o.maxUploads) {
      this.stats.busy++
      return sendJson(res, 503, { code: Code.PeerLimited, msg: 'upload slots full' }, { 'retry-after': '1' })
    }
    this.active++
    t.users++
    try {
      const data = await t.read(r.start, r.end, this.o.buffers.take(r.end - r.start + 1))
      res.writeHead(206, {
        'content-type': 'application/octet-stream',
        'content-length': data.length,
        'content-range': `bytes ${r.start}-${r.end}/${t.length}`
      })
      for (let off = 0; off < data.length && !res.destroyed; off += CHUNK) {
        const part = data.subarray(off, off + CHUNK)
        await this.o.limiter?.take(part.length)
        if (!res.write(part)) await drained(res)
        this.stats.bytes += part.length
      }
      await endFlushed(res)
      this.o.buffers.give(data)
    } finally {
      this.active--
      t.users--
    }
  }
}
