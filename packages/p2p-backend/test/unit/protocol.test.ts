import test from 'ava'
import { choosePieceSize, parseHttpRange, parseRange, pieceBounds, pieceSizeFor, piecesCovering } from '../../src/protocol/pieces.js'
import { digestOfTask, TASK_ID, taskIdOf } from '../../src/protocol/task-id.js'
import { TokenSigner, TokenVerifier } from '../../src/protocol/token.js'

const MiB = 1024 * 1024
const DIGEST = `sha256:${'ab'.repeat(32)}`

test("piece size follows Dragonfly v1's rule, and a lazy reader's hint lowers it", t => {
  t.is(pieceSizeFor(64 * MiB), 4 * MiB)
  t.is(pieceSizeFor(200 * MiB), 4 * MiB)
  t.is(pieceSizeFor(300 * MiB), 5 * MiB)
  t.is(pieceSizeFor(10 * 1024 * MiB), 15 * MiB)
  t.is(choosePieceSize(64 * MiB, MiB), MiB)
  t.is(choosePieceSize(64 * MiB, 1), 64 * 1024, 'never below 64 KiB')
  t.is(choosePieceSize(64 * MiB, 64 * MiB), 4 * MiB, 'a hint never raises it')
  t.is(choosePieceSize(64 * MiB, -5), 4 * MiB)
  t.deepEqual(pieceBounds(2, 10 * MiB, 4 * MiB), { start: 8 * MiB, end: 10 * MiB - 1 })
  t.deepEqual(piecesCovering(MiB - 1, 2, MiB), [0, 1])
})

test('ranges: one satisfiable range or nothing', t => {
  t.deepEqual(parseRange('0-99'), { start: 0, end: 99 })
  for (const bad of ['99-0', '-1', 'a-b', '1-2-3', '', '1'.repeat(16) + '-2']) t.is(parseRange(bad), undefined, bad)
  t.is(parseHttpRange(undefined, 100), 'none')
  t.deepEqual(parseHttpRange('bytes=10-', 100), { start: 10, end: 99 })
  t.deepEqual(parseHttpRange('bytes=-10', 100), { start: 90, end: 99 })
  t.deepEqual(parseHttpRange('bytes=90-1000', 100), { start: 90, end: 99 })
  for (const bad of ['bytes=100-', 'bytes=5-1', 'bytes=0-1,3-4', 'bytes=-0', 'items=0-1', `bytes=0-${'9'.repeat(20)}`])
    t.is(parseHttpRange(bad, 100), undefined, bad)
})

test('task identity: a blob is its digest wherever it is served; other URLs hash without filtered parameters', t => {
  const a = taskIdOf(`http://r1:5000/v2/lib/a/blobs/${DIGEST}`)
  t.is(a, DIGEST.replace(':', '-'))
  t.is(taskIdOf(`https://mirror.test/v2/other/name/blobs/${DIGEST}`), a)
  t.is(digestOfTask(a), DIGEST)
  const signed = taskIdOf('http://h/file?Expires=1&Signature=x&v=2', { filter: ['Expires', 'Signature'] })
  t.is(signed, taskIdOf('http://h/file?Expires=9&Signature=y&v=2', { filter: ['Expires', 'Signature'] }))
  t.not(signed, taskIdOf('http://h/file?Expires=1&Signature=x&v=3', { filter: ['Expires', 'Signature'] }))
  t.not(taskIdOf('http://h/file', { identifier: 'x' }), taskIdOf('http://h/file'))
  t.regex(signed, TASK_ID)
  t.is(digestOfTask(signed), undefined)
})

test('upload tokens: only a trusted key, unexpired and untampered, grants anything', async t => {
  const signer = await TokenSigner.generate()
  const other = await TokenSigner.generate()
  const v = new TokenVerifier()
  await v.trust(signer.publicPem)
  const grant = { task: 'a'.repeat(64), src: 'p1', dst: 'p2', pieces: [1, 2] }
  const tok = await signer.sign(grant)
  t.deepEqual(await v.verify(tok), grant)
  t.is(await v.verify(await other.sign(grant)), undefined, 'another key')
  const [h, p, s] = tok.split('.')
  const forged = Buffer.from(JSON.stringify({ ...grant, pieces: [1, 2, 3] })).toString('base64url')
  t.is(await v.verify(`${h}.${forged}.${s}`), undefined, 'payload changed')
  t.is(await v.verify(`${h}.${p}`), undefined)
  t.is(await v.verify('garbage'), undefined)
  // A supernode sharing the key through Redis (as a JWK) signs tokens the same public key checks.
  const twin = await TokenSigner.fromJwk(await signer.exportJwk(), signer.publicPem)
  t.deepEqual(await v.verify(await twin.sign(grant)), grant)
})
