import { Code, type ResultInfo } from '../protocol/codes.js'
import type { OriginRefusal } from './tasks.js'

/** An API answer: HTTP status and v1's ResultInfo body. */
export interface Answer {
  status: number
  body: ResultInfo | Record<string, unknown>
}

export const ok = (data?: unknown): Answer => ({ status: 200, body: { code: Code.Success, data } })
export const bad = (msg: string): Answer => ({ status: 400, body: { code: Code.ParamError, msg } })
export const notFound = (msg: string): Answer => ({ status: 404, body: { code: Code.TargetNotFound, msg } })

/**
 * The origin refused a task. To a peer registering (`forCaller`) a 401 or 403
 * goes back as it came, with the challenge, so its client's token dance
 * works; anything else (and a preheat's refusal) is a 502.
 */
export function refused(err: OriginRefusal, forCaller: boolean): Answer {
  const auth = err.status === 401 || err.status === 403
  const code = auth ? Code.NeedAuth : Code.URLNotReachable
  if (!forCaller) return { status: 502, body: { code, msg: err.message } }
  return {
    status: auth ? err.status : 502,
    body: { code, msg: err.message, data: { status: err.status, wwwAuthenticate: err.wwwAuthenticate } }
  }
}

/** "1,2,5-9" into piece numbers below `count` (at most 4,096); undefined when malformed. */
export function parseWant(s: string, count: number): number[] | undefined {
  const out: number[] = []
  for (const part of s.split(',')) {
    const m = /^(\d{1,9})(?:-(\d{1,9}))?$/.exec(part)
    if (m === null) return undefined
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (b < a || b >= count || out.length + (b - a + 1) > 4096) return undefined
    for (let n = a; n <= b; n++) out.push(n)
  }
  return out
}

export function describe(err: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  const i = err.issues[0]
  return `${i.path.map(String).join('.') || 'body'}: ${i.message}`
}
