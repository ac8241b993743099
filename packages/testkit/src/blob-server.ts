import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'

export interface BlobServer {
  url: string
  /** Bytes of blob data sent so far. */
  bytesSent: () => number
  requests: () => number
  reset: () => void
  close: () => Promise<void>
}

/** A static blob server on a free loopback port, honouring Range and counting what it sends. */
export async function startBlobServer(t: { teardown: (fn: () => Promise<void>) => void }, dir: string): Promise<BlobServer> {
  let sent = 0
  let reqs = 0
  const server: Server = createServer((req, res) => {
    reqs++
    const id = (req.url ?? '').split('/').pop() ?? ''
    if (!/^[0-9a-f]{64}$/.test(id)) {
      res.writeHead(404).end()
      return
    }
    const path = join(dir, id)
    stat(path).then(
      st => {
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
        const start = m === null ? 0 : Number(m[1])
        const end = m === null ? st.size - 1 : Math.min(Number(m[2]), st.size - 1)
        if (start > end) {
          res.writeHead(416).end()
          return
        }
        res.writeHead(m === null ? 200 : 206, {
          'content-length': end - start + 1,
          ...(m === null ? {} : { 'content-range': `bytes ${start}-${end}/${st.size}` })
        })
        if (req.method === 'HEAD') {
          res.end()
          return
        }
        const s = createReadStream(path, { start, end })
        s.on('data', (b: Buffer | string) => {
          sent += b.length
        })
        s.pipe(res)
      },
      () => {
        res.writeHead(404).end()
      }
    )
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  t.teardown(close)
  return {
    url: `http://127.0.0.1:${port}/blobs`,
    bytesSent: () => sent,
    requests: () => reqs,
    reset: () => {
      sent = 0
      reqs = 0
    },
    close
  }
}
