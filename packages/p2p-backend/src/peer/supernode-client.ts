import { connect } from 'node:net'
import { Agent, type Dispatcher } from 'undici'
import { Code, type ResultInfo } from '../protocol/codes.js'
import type { PieceTask, RegisterData, RegisterRequest } from '../protocol/messages.js'

/** No supernode in the list answered: the caller goes back to the source (or fails with --notbs). */
export class SupernodesDown extends Error {
  constructor(nodes: readonly string[], cause?: unknown) {
    super(`no supernode answered (${nodes.join(', ')})`, { cause })
    this.name = 'SupernodesDown'
  }
}

/** The supernode refused (an answer, not a failure to reach it): `code` is v1's result code. */
export class SupernodeRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    msg: string,
    readonly data?: Record<string, unknown>
  ) {
    super(msg)
    this.name = 'SupernodeRefusal'
  }
}

export type PullAnswer =
  | { kind: 'pieces'; pieces: PieceTask[] }
  | { kind: 'finish' }
  | { kind: 'wait' }
  | { kind: 'source-error'; msg: string }

/**
 * A peer's side of the supernode API, over the `--node` list: requests go to
 * the supernode in use, and when it stops answering, to the next one in the
 * list (the caller registers its tasks there again: `node` changed).
 */
export class SupernodeClient {
  private current = 0
  private readonly agent: Dispatcher

  constructor(
    readonly nodes: readonly string[],
    timeoutMs = 15_000
  ) {
    if (nodes.length === 0) throw new Error('no supernode given (--node host:port)')
    this.agent = new Agent({ connect: { timeout: 3000 }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 10_000 })
  }

  get node(): string {
    return this.nodes[this.current]
  }

  /** The local address that reaches the supernode in use: what peers are told to connect to. */
  async localIp(): Promise<string> {
    for (let i = 0; i < this.nodes.length; i++) {
      const [host, port] = splitHostPort(this.node)
      const ip = await new Promise<string | undefined>(resolve => {
        const s = connect({ host, port, timeout: 3000 })
        s.once('connect', () => {
          resolve(s.localAddress?.replace(/^::ffff:/, ''))
          s.destroy()
        })
        s.once('error', () => resolve(undefined))
        s.once('timeout', () => {
          s.destroy()
          resolve(undefined)
        })
      })
      if (ip !== undefined) return ip
      this.current = (this.current + 1) % this.nodes.length
    }
    throw new SupernodesDown(this.nodes)
  }

  async register(req: RegisterRequest): Promise<RegisterData> {
    const r = await this.call<RegisterData>('POST', '/peer/registry', req)
    if (r.code !== Code.Success || r.data === undefined)
      throw new SupernodeRefusal(r.status, r.code, r.msg ?? `register refused (${r.code})`, r.data as never)
    return r.data
  }

  async pull(q: Record<string, string | number | undefined>, signal?: AbortSignal): Promise<PullAnswer> {
    const r = await this.call<unknown>('GET', `/peer/task?${query(q)}`, undefined, signal)
    if (r.code === Code.PeerContinue && Array.isArray(r.data)) return { kind: 'pieces', pieces: r.data as PieceTask[] }
    if (r.code === Code.PeerFinish) return { kind: 'finish' }
    if (r.code === Code.PeerWait) return { kind: 'wait' }
    if (r.code === Code.SourceError) return { kind: 'source-error', msg: r.msg ?? 'the origin failed' }
    throw new SupernodeRefusal(r.status, r.code, r.msg ?? `pull refused (${r.code})`)
  }

  async reportSuccess(q: Record<string, string | number>): Promise<void> {
    await this.call('GET', `/peer/piece/suc?${query(q)}`)
  }

  async reportError(q: Record<string, string | number>): Promise<void> {
    await this.call('GET', `/peer/piece/error?${query(q)}`)
  }

  async serviceDown(taskId: string, cid: string): Promise<void> {
    await this.call('GET', `/peer/service/down?${query({ taskId, cid })}`)
  }

  async heartbeat(ip: string, port: number): Promise<boolean> {
    const r = await this.call<{ needRegister?: boolean }>('POST', '/peer/heartbeat', { IP: ip, port })
    return r.data?.needRegister === true
  }

  async close(): Promise<void> {
    await this.agent.close()
  }

  /**
   * One request to the supernode in use; on a failure to reach it, the next
   * in the list (the node changes: callers notice via `node`). An answer,
   * whatever its code, is returned as is.
   */
  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    signal?: AbortSignal
  ): Promise<ResultInfo<T> & { status: number }> {
    let last: unknown
    for (let i = 0; i < this.nodes.length; i++) {
      const node = this.node
      try {
        const res = await this.agent.request({
          origin: `http://${node}`,
          path,
          method,
          signal,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body)
        })
        const text = await res.body.text()
        let parsed: ResultInfo<T>
        try {
          parsed = JSON.parse(text) as ResultInfo<T>
        } catch {
          throw new Error(`supernode ${node} answered ${res.statusCode} without JSON`)
        }
        return { ...parsed, status: res.statusCode }
      } catch (err) {
        if (signal?.aborted === true) throw err
        last = err
        if (this.node === node) this.current = (this.current + 1) % this.nodes.length
      }
    }
    throw new SupernodesDown(this.nodes, last)
  }
}

export function splitHostPort(s: string): [string, number] {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s)
  if (m === null) throw new Error(`${JSON.stringify(s)}: want host:port`)
  return [m[1], Number(m[2])]
}

const query = (q: Record<string, string | number | undefined>): string =>
  new URLSearchParams(
    Object.entries(q)
      .filter((e): e is [string, string | number] => e[1] !== undefined)
      .map(([k, v]): [string, string] => [k, String(v)])
  ).toString()
