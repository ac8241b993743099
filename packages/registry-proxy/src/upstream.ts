import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { ERROR_TYPE } from '@nydusjs/p2p-backend'
import type { Dispatcher } from 'undici'

/** Hop-by-hop headers (RFC 9110 7.6.1), never forwarded either way. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade'
])

/** Headers minus hop-by-hop ones and those the Connection header names, minus `also`. */
export function endToEnd(h: IncomingHttpHeaders, also: string[] = []): Record<string, string | string[]> {
  const named = String(h.connection ?? '')
    .split(',')
    .map(s => s.trim().toLowerCase())
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k) && !named.includes(k) && !also.includes(k)) out[k] = v
  return out
}

/** The proxy's own failure: one line, and the header that tells it from the registry's answers. */
export function proxyError(res: ServerResponse, status: number, msg: string): void {
  if (res.headersSent) return void res.destroy()
  const body = JSON.stringify({ errors: [{ code: 'PROXY', message: msg }] })
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [ERROR_TYPE]: 'proxy' })
  res.end(body)
}

/**
 * The request to `url` as it came (method, body, end-to-end headers; Host
 * and Accept-Encoding dropped, so the origin names itself and answers in
 * identity), the answer back as it came: a 401 and its challenge reach the
 * client unchanged, so its token dance works through the proxy.
 */
export async function passThrough(req: IncomingMessage, res: ServerResponse, url: URL, dispatcher: Dispatcher): Promise<void> {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  let up: Dispatcher.ResponseData
  try {
    up = await dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: req.method as Dispatcher.HttpMethod,
      headers: endToEnd(req.headers, ['host', 'accept-encoding']),
      body: hasBody ? req : undefined,
      signal: AbortSignal.timeout(10 * 60_000)
    })
  } catch (err) {
    return proxyError(res, 502, `${url.host}: ${(err as Error).message}`)
  }
  res.writeHead(up.statusCode, endToEnd(up.headers as IncomingHttpHeaders))
  try {
    await pipeline(up.body, res)
  } catch {
    // The origin closed mid-answer, or the client left: the client sees a cut connection, never a short body as whole.
    res.destroy()
  }
}
