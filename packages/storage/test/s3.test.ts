import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { startS3 } from '@nydusjs/testkit'
import { S3Backend } from '../src/index.js'

const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) % 256))
const ID = 'd'.repeat(64)

test('s3: SigV4 range reads, path-style and virtual-hosted, with a prefix', async t => {
  const s3 = await startS3(t)
  await s3.put(`nydus/${ID}`, data)
  const path = new S3Backend({
    endpoint: s3.endpoint,
    scheme: 'http',
    bucket: s3.bucket,
    objectPrefix: 'nydus/',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey
  })
  t.true((await path.read(ID, 500, 1000)).equals(data.subarray(500, 1500)))
  t.is(await path.size(ID), data.length)
  const port = s3.endpoint.split(':')[1]
  const vhost = new S3Backend({
    endpoint: `s3.localhost:${port}`,
    connectTo: s3.endpoint,
    addressing: 'virtual',
    scheme: 'http',
    bucket: s3.bucket,
    objectPrefix: 'nydus/',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey
  })
  t.true((await vhost.read(ID, 0, 10)).equals(data.subarray(0, 10)))
  const missing = await t.throwsAsync(path.read('e'.repeat(64), 0, 10), { instanceOf: NydusError })
  t.is(missing?.code, 'ERR_BLOB_NOT_FOUND')
  await Promise.all([path.close(), vhost.close()])
})

test('s3: a wrong secret is refused by the signature check; the error never shows the secret', async t => {
  const s3 = await startS3(t)
  await s3.put(ID, data)
  const b = new S3Backend({
    endpoint: s3.endpoint,
    scheme: 'http',
    bucket: s3.bucket,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: 'not-the-Secret-9'
  })
  const err = await t.throwsAsync(b.read(ID, 0, 10), { instanceOf: NydusError })
  t.is(err?.code, 'ERR_BACKEND_AUTH')
  t.regex(err?.message ?? '', /SignatureDoesNotMatch/)
  t.false((err?.message ?? '').includes('not-the-Secret-9'))
  await b.close()
})

test('s3: credentials from the standard AWS environment variables', async t => {
  const s3 = await startS3(t)
  await s3.put(ID, data)
  const saved = { ...process.env }
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey
  try {
    const b = new S3Backend({ endpoint: s3.endpoint, scheme: 'http', bucket: s3.bucket })
    t.true((await b.read(ID, 7, 7)).equals(data.subarray(7, 14)))
    await b.close()
  } finally {
    process.env = saved
  }
  t.throws(() => new S3Backend({ endpoint: s3.endpoint, bucket: s3.bucket }), { instanceOf: NydusError, message: /no credentials/ })
})
