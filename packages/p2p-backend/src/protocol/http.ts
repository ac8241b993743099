import type { IncomingMessage, ServerResponse } from 'node:http'

/** A request body as JSON, at most `max` bytes; undefined when too large or not JSON. */
export async function readJson(req: IncomingMessage, max = 64 * 1024): Promise<{ ok: true; value: unknown } | { ok: false; why: string }> {
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > max) return { ok: false, why: `body larger than ${max} bytes` }
    parts.push(chunk)
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(parts).toString('utf8')) }
  } catch {
    return { ok: false, why: 'body is not JSON' }
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const b = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length, ...headers })
  res.end(b)
}

/** The client's address without an IPv4-mapped prefix. */
export const remoteIp = (req: IncomingMessage): string => (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '')
