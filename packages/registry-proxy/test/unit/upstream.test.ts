import test from 'ava'
import { endToEnd } from '../../src/upstream.js'

test('what goes to the origin: hop-by-hop headers, those Connection names, Host and Accept-Encoding are dropped; credentials pass', t => {
  const out = endToEnd(
    {
      host: 'mirror:65001',
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'x-hop': 'secret-to-the-proxy',
      'proxy-authorization': 'Basic cHJveHk=',
      'transfer-encoding': 'chunked',
      te: 'trailers',
      upgrade: 'h2c',
      'accept-encoding': 'gzip',
      authorization: 'Bearer tok',
      accept: 'application/vnd.oci.image.manifest.v1+json',
      range: 'bytes=0-9'
    },
    ['host', 'accept-encoding']
  )
  t.deepEqual(out, { authorization: 'Bearer tok', accept: 'application/vnd.oci.image.manifest.v1+json', range: 'bytes=0-9' })
})
