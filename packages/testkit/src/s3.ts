import aws4 from 'aws4'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { tempDir } from './paths.js'

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

export interface TestS3 {
  endpoint: string
  bucket: string
  accessKeyId: string
  secretAccessKey: string
  put: (key: string, data: Buffer) => Promise<void>
}

/**
 * s3rver on a free loopback port with one bucket, behind a front that checks
 * SigV4 signatures (s3rver itself checks only the access key id for V4): the
 * front re-signs each request with the known secret using aws4 and refuses a
 * mismatch with 403 SignatureDoesNotMatch. Virtual-hosted requests use `<bucket>.s3.localhost`.
 */
export async function startS3(t: Teardown, bucket = 'blobs'): Promise<TestS3> {
  const { default: S3rver } = (await import('s3rver')) as {
    default: new (o: Record<string, unknown>) => { run: () => Promise<AddressInfo>; close: () => Promise<void> }
  }
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: await tempDir(t, 's3-'),
    configureBuckets: [{ name: bucket }],
    serviceEndpoint: 'localhost',
    allowMismatchedSignatures: false
  })
  const addr = await server.run()
  t.teardown(async () => {
    await server.close()
  })
  const creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
  const front = createServer((req, res) => {
    const auth = req.headers.authorization ?? ''
    const signed = /SignedHeaders=([^,]+)/.exec(auth)?.[1].split(';') ?? []
    const headers: Record<string, string> = {}
    for (const h of signed) if (h !== 'host') headers[h] = String(req.headers[h] ?? '')
    const expect = aws4.sign(
      {
        host: req.headers.host,
        path: req.url,
        method: req.method,
        service: 's3',
        region: /Credential=[^/]+\/\d+\/([^/]+)\//.exec(auth)?.[1] ?? 'us-east-1',
        headers
      },
      creds
    )
    if (expect.headers?.Authorization !== auth) {
      res
        .writeHead(403, { 'content-type': 'application/xml' })
        .end('<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>signature mismatch</Message></Error>')
      return
    }
    const up = httpRequest({ host: '127.0.0.1', port: addr.port, method: req.method, path: req.url, headers: req.headers }, r => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>(resolve => front.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    front.closeAllConnections()
    await new Promise<void>(resolve => front.close(() => resolve()))
  })
  const endpoint = `127.0.0.1:${(front.address() as AddressInfo).port}`
  return {
    endpoint,
    bucket,
    ...creds,
    put: async (key, data) => {
      const signed = aws4.sign(
        {
          host: endpoint,
          path: `/${bucket}/${key}`,
          method: 'PUT',
          service: 's3',
          region: 'us-east-1',
          body: data,
          headers: { 'content-type': 'application/octet-stream' }
        },
        creds
      )
      const res = await request(`http://${endpoint}/${bucket}/${key}`, {
        method: 'PUT',
        headers: signed.headers as Record<string, string>,
        body: data
      })
      await res.body.dump()
      if (res.statusCode !== 200) throw new Error(`s3 put ${key}: ${res.statusCode}`)
    }
  }
}
