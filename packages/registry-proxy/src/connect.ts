import { createServer, type IncomingMessage, type Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import type { HijackCa } from './hijack.js'
import type { RegistryMirror } from './mirror.js'

const AUTHORITY = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/

/**
 * CONNECT for the forward proxy. A host that `hijack_https.hosts` names is
 * answered with a leaf certificate from the configured CA and its requests
 * are read here (blob GETs through P2P, the rest passed on over TLS); any
 * other host gets a plain TCP tunnel.
 */
export class ConnectProxy {
  /** Serves the requests read from hijacked TLS connections; `targets` says which host each connection was for. */
  private readonly inner: Server
  private readonly targets = new WeakMap<object, string>()

  constructor(
    private readonly o: { mirror: RegistryMirror; ca?: HijackCa; hijack: RegExp[]; log: Logger; allowed: (s: Socket) => boolean }
  ) {
    this.inner = createServer((req, res) => {
      const target = this.targets.get(req.socket) ?? ''
      this.o.mirror.forward(req, res, new URL(`https://${target}${req.url ?? '/'}`)).catch((err: Error) => {
        this.o.log.error({ err: err.message }, 'hijacked request failed')
        res.destroy()
      })
    })
    this.inner.on('clientError', (_err, socket) => socket.destroy())
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy())
    const m = AUTHORITY.exec(req.url ?? '')
    const port = Number(m?.[2])
    if (m === null || port < 1 || port > 65535) {
      refuse(socket, '400 Bad Request', 'CONNECT wants host:port')
      return
    }
    if (!this.o.allowed(req.socket)) {
      refuse(socket, '403 Forbidden', 'only clients on this host may use the proxy')
      return
    }
    const host = m[1].replace(/^\[|\]$/g, '')
    if (this.o.ca !== undefined && this.o.hijack.some(re => re.test(`${m[1]}:${port}`))) void this.hijack(socket, head, host, port)
    else this.tunnel(socket, head, host, port)
  }

  async close(): Promise<void> {
    this.inner.closeAllConnections()
    await new Promise<void>(resolve => this.inner.close(() => resolve()))
  }

  private async hijack(socket: Duplex, head: Buffer, host: string, port: number): Promise<void> {
    let ctx: Awaited<ReturnType<HijackCa['contextFor']>>
    try {
      ctx = await this.o.ca!.contextFor(host)
    } catch (err) {
      this.o.log.error({ host, err: (err as Error).message }, 'no leaf certificate')
      return refuse(socket, '502 Bad Gateway', `no certificate for ${host}`)
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    const tls = new TLSSocket(socket as Socket, { isServer: true, secureContext: ctx })
    tls.on('error', () => tls.destroy())
    this.targets.set(tls, port === 443 ? host : `${host.includes(':') ? `[${host}]` : host}:${port}`)
    this.inner.emit('connection', tls)
  }

  private tunnel(socket: Duplex, head: Buffer, host: string, port: number): void {
    const up = connect({ host, port, timeout: 10_000 })
    let open = false
    up.once('connect', () => {
      open = true
      up.setTimeout(0)
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) up.write(head)
      up.pipe(socket)
      socket.pipe(up)
    })
    up.once('timeout', () => up.destroy(new Error('connect timed out')))
    up.on('error', err => {
      if (open) socket.destroy()
      else refuse(socket, '502 Bad Gateway', `${host}:${port}: ${err.message}`)
    })
    socket.on('close', () => up.destroy())
  }
}

function refuse(socket: Duplex, status: string, msg: string): void {
  if (!socket.writable) return void socket.destroy()
  const body = `${msg}\n`
  socket.end(
    `HTTP/1.1 ${status}\r\nX-Dragonfly-Error-Type: proxy\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  )
}
