import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { endFlushed, writeFlushed } from '../io/piece-buffers.js'
import { Code } from '../protocol/codes.js'
import { sendJson } from '../protocol/http.js'
import { parseHttpRange, piecesCovering } from '../protocol/pieces.js'
import type { PeerNode } from './peer-node.js'
import { SupernodeRefusal, SupernodesDown } from './supernode-client.js'
import type { TaskDownload } from './task-download.js'

const BLOB_PATH =
  /^\/v2\/((?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)\/blobs\/(sha256:[0-9a-f]{64})$/
/** What of a client's request goes to the origin: who it is, nothing about the connection. */
const FORWARD = ['authorization', 'cookie']
export const ERROR_TYPE = 'x-dragonfly-error-type'

/**
 * Blob GETs and HEADs through the swarm, for dfdaemon's registry mirror
 * (which decides the upstream and which requests come here). A Range is
 * served (206) as soon as the pieces covering it are here; a whole blob
 * streams in order as pieces arrive and is cut off if it does not hash to
 * its digest. The origin's 401 and challenge reach the client as they are.
 */
export class BlobFace {
  constructor(private readonly node: PeerNode) {}

  /**
   * A GET or HEAD of the blob at `blob` (an origin's `/v2/<repo>/blobs/<digest>`
   * URL) through the swarm; false if it is none, or (with `fallback`) when no
   * supernode answers, for the caller to fetch it from the origin instead.
   */
  async serve(req: IncomingMessage, res: ServerResponse, blob: URL, fallback = false): Promise<boolean> {
    const m = BLOB_PATH.exec(blob.pathname)
    if (m === null || (req.method !== 'GET' && req.method !== 'HEAD')) return false
    const headers: string[] = []
    for (const k of FORWARD) {
      const v = req.headers[k]
      if (typeof v === 'string') headers.push(`${k}: ${v}`)
    }
    let task: TaskDownload
    try {
      task = await this.node.task({ url: `${blob.origin}${blob.pathname}`, headers, lazy: req.headers.range !== undefined })
    } catch (err) {
      if (fallback && err instanceof SupernodesDown) return false
      this.refused(res, err)
      return true
    }
    const length = task.stored.length
    if (req.method === 'HEAD') {
      res
        .writeHead(200, {
          'content-length': length,
          'docker-content-digest': m[2],
          'content-type': 'application/octet-stream',
          'accept-ranges': 'bytes'
        })
        .end()
      return true
    }
    const r = parseHttpRange(req.headers.range, length)
    if (r === undefined) {
      res.writeHead(416, { 'content-range': `bytes */${length}`, [ERROR_TYPE]: 'proxy' }).end()
      return true
    }
    if (r === 'none') await this.whole(res, task, m[2])
    else await this.range(res, task, r.start, r.end)
    return true
  }

  private async range(res: ServerResponse, task: TaskDownload, start: number, end: number): Promise<void> {
    try {
      await task.ensure(piecesCovering(start, end - start + 1, task.stored.pieceSize))
    } catch (err) {
      return this.refused(res, err)
    }
    const buffers = this.node.buffers
    const body = await task.stored.read(start, end, buffers.take(end - start + 1))
    res.writeHead(206, {
      'content-length': body.length,
      'content-range': `bytes ${start}-${end}/${task.stored.length}`,
      'content-type': 'application/octet-stream'
    })
    res.write(body)
    await endFlushed(res)
    buffers.give(body)
  }

  /** The whole blob in order, piece by piece as they arrive; a digest mismatch at the end aborts the connection. */
  private async whole(res: ServerResponse, task: TaskDownload, digest: string): Promise<void> {
    const s = task.stored
    const all = task.all()
    let failure: unknown
    all.catch((err: unknown) => {
      failure = err
    })
    const arrived = async (n: number): Promise<boolean> =>
      await Promise.race([
        s.until(n).then(() => true),
        all.then(
          () => s.has(n),
          () => s.has(n)
        )
      ])
    if (!(await arrived(0))) return this.refused(res, failure ?? task.failure)
    res.writeHead(200, { 'content-length': s.length, 'docker-content-digest': digest, 'content-type': 'application/octet-stream' })
    const h = createHash('sha256')
    // Two buffers in turn: the next piece is read while the socket still sends the last.
    const buffers = this.node.buffers
    const sending: Array<{ buf: Buffer; flushed: Promise<void> }> = []
    try {
      for (let n = 0; n < s.count && !res.destroyed; n++) {
        if (!(await arrived(n))) return void res.destroy()
        const b = s.bounds(n)
        const prev = sending.length < 2 ? undefined : sending.shift()
        await prev?.flushed
        const buf = prev?.buf ?? buffers.take(Math.min(s.pieceSize, s.length))
        const data = await s.read(b.start, b.end, buf.subarray(0, b.end - b.start + 1))
        h.update(data)
        sending.push({ buf, flushed: writeFlushed(res, data) })
      }
      if (res.destroyed || `sha256:${h.digest('hex')}` !== digest) return void res.destroy()
      await endFlushed(res)
    } finally {
      await Promise.all(sending.map(x => x.flushed))
      for (const x of sending) buffers.give(x.buf)
    }
  }

  private refused(res: ServerResponse, err: unknown): void {
    if (res.headersSent) return void res.destroy()
    if (err instanceof SupernodeRefusal && err.code === Code.NeedAuth) {
      const www = err.data?.wwwAuthenticate
      const headers: Record<string, string> = typeof www === 'string' ? { 'www-authenticate': www } : {}
      sendJson(res, err.status === 403 ? 403 : 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, headers)
      return
    }
    const why = err instanceof SupernodesDown ? 'no supernode answered' : (err as Error).message
    sendJson(res, 502, { code: Code.SystemError, msg: `P2P: ${why}` }, { [ERROR_TYPE]: 'proxy' })
  }
}

/**
 * The registry a mirror request is for: X-Dragonfly-Registry, else
 * containerd's `?ns=` (a host; docker.io is registry-1.docker.io), else the
 * configured default; an origin (`scheme://host[:port]`) or undefined.
 */
export function upstreamOf(req: IncomingMessage, url: URL, dflt?: string): string | undefined {
  const h = req.headers['x-dragonfly-registry']
  const ns = url.searchParams.get('ns')
  // containerd names the host only: the configured default's scheme when it is that host (a plain-HTTP registry).
  const byNs =
    ns === null
      ? undefined
      : dflt !== undefined && hostOf(dflt) === ns
        ? dflt
        : `https://${ns === 'docker.io' ? 'registry-1.docker.io' : ns}`
  const raw = typeof h === 'string' ? h : (byNs ?? dflt)
  if (raw === undefined) return undefined
  try {
    const u = new URL(raw.includes('://') ? raw : `https://${raw}`)
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : undefined
  } catch {
    return undefined
  }
}

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).host
  } catch {
    return undefined
  }
}
