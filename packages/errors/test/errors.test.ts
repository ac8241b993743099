import test from 'ava'
import { constants } from 'node:os'
import { CODE_KIND, KIND_STATUS, NydusError, errnoOf, oneLine, statusOf, withContext, type ErrorCode } from '../src/index.js'

// The table is the contract: these rows are what users, scripts and protocol peers see.
const ROWS: Array<[ErrorCode, number, string, number, number]> = [
  ['ERR_BAD_ARGUMENT', 2, 'EINVAL', 400, 3],
  ['ERR_CONFIG', 78, 'EINVAL', 400, 3],
  ['ERR_RAFS_CHECKSUM', 65, 'EIO', 422, 15],
  ['ERR_BLOB_NOT_FOUND', 66, 'EIO', 404, 5],
  ['ERR_RAFS_NOT_FOUND', 66, 'ENOENT', 404, 5],
  ['ERR_BACKEND_AUTH', 77, 'EACCES', 403, 7],
  ['ERR_BACKEND_TIMEOUT', 69, 'ETIMEDOUT', 504, 4],
  ['ERR_BACKEND_HTTP', 69, 'EIO', 503, 14],
  ['ERR_MOUNTPOINT_BUSY', 75, 'EBUSY', 409, 9],
  ['ERR_RAFS_UNSUPPORTED', 69, 'ENOSYS', 501, 12],
  ['ERR_SNAPSHOT_NOT_FOUND', 66, 'ENOENT', 404, 5],
  ['ERR_SNAPSHOT_EXISTS', 73, 'EEXIST', 409, 6],
  ['ERR_SNAPSHOT_IN_USE', 75, 'EBUSY', 409, 9],
  ['ERR_INTERNAL', 70, 'EIO', 500, 13]
]

for (const [code, exit, errno, http, grpc] of ROWS) {
  test(`${code} -> exit ${exit}, ${errno}, HTTP ${http}, gRPC ${grpc}`, t => {
    t.deepEqual(statusOf(new NydusError(code, 'x')), { exit, errno, http, grpc, kind: CODE_KIND[code], code } as never)
  })
}

test('every code has a kind, every kind a real errno, an error status and a non-zero exit', t => {
  for (const [code, kind] of Object.entries(CODE_KIND)) {
    const s = KIND_STATUS[kind]
    t.truthy(s, code)
    t.true(s.exit > 0 && s.exit < 126, code)
    t.true(s.http >= 400 && s.http < 600, code)
    t.true(s.grpc > 0 && s.grpc <= 16, code)
    t.is(typeof (constants.errno as Record<string, number>)[s.errno], 'number', `${code}: ${s.errno}`)
  }
})

test('a foreign error is internal; a project code on any error is honoured', t => {
  t.is(statusOf(new TypeError('boom')).code, 'ERR_INTERNAL')
  t.is(statusOf(Object.assign(new Error('x'), { code: 'ENOENT' })).code, 'ERR_INTERNAL')
  t.is(statusOf(Object.assign(new Error('x'), { code: 'ERR_BLOB_NOT_FOUND' })).exit, 66)
  t.is(errnoOf(new NydusError('ERR_BACKEND_TIMEOUT', 'x')), constants.errno.ETIMEDOUT)
  t.is(errnoOf(new Error('x')), constants.errno.EIO)
})

test('context is added in front and the original code survives to the one line', t => {
  const inner = new NydusError('ERR_RAFS_CHECKSUM', 'superblock checksum mismatch')
  const outer = withContext(withContext(inner, 'bootstrap /x/image.boot'), 'merge')
  t.is(outer.code, 'ERR_RAFS_CHECKSUM')
  t.is((outer.cause as NydusError).cause, inner)
  t.is(oneLine(outer), 'merge: bootstrap /x/image.boot: superblock checksum mismatch [ERR_RAFS_CHECKSUM]')
  t.is(withContext(new Error('eh'), 'where', 'ERR_BAD_ARGUMENT').code, 'ERR_BAD_ARGUMENT')
  t.is(oneLine(new Error('a\n  b\n')), 'a; b')
})
