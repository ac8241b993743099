import test from 'ava'
import { KIND_STATUS } from '@nydusjs/errors'
import { pino } from 'pino'
import type { BootstrapReader, InodeRecord } from '@nydusjs/rafs'
import { BufferPool } from '../src/buffer-pool.js'
import { RafsLowLevel, type Reply } from '../src/fuse/lowlevel.js'
import { EXIT_HANDOVER } from '../src/fuse/session-keeper.js'
import { type InHeader, Op } from '../src/fuse/protocol.js'
import { DaemonMetrics } from '../src/metrics.js'
import type { RafsFs } from '../src/rafs-fs.js'

/** A file whose reads wait until `finish` is called; answers are recorded. */
function setUp() {
  const file = { index: 0, ino: 2, mode: 0o100644, size: 1 << 20 } as InodeRecord
  let finish: ((n: number) => void) | undefined
  const fs = {
    recordAccess: () => {},
    readAnswered: (_r: InodeRecord, _b: Buffer, _l: number, _p: number, cb: { done: (n: number) => void }) => {
      let cancelled = false
      finish = n => {
        if (!cancelled) cb.done(n)
      }
      return () => {
        cancelled = true
      }
    }
  } as unknown as RafsFs
  const reader = { inodeCount: 1, inode: () => file } as unknown as BootstrapReader
  const ll = new RafsLowLevel(fs, reader, new BufferPool(1 << 20), new DaemonMetrics(), pino({ level: 'silent' }))
  const answers: Array<{ unique: bigint; errno?: number; bytes?: number }> = []
  const reply: Reply = {
    data: (h, ...parts) => answers.push({ unique: h.unique, bytes: parts.reduce((s, p) => s + p.length, 0) }),
    error: (h, errno) => answers.push({ unique: h.unique, errno })
  }
  const header = (opcode: number, unique: bigint): InHeader => ({ len: 0, opcode, unique, nodeid: 1n, uid: 0, gid: 0, pid: 0 })
  const read = (unique: bigint): void => {
    const body = Buffer.alloc(40)
    body.writeBigUInt64LE(0n, 8)
    body.writeUInt32LE(4096, 16)
    ll.handle(header(Op.READ, unique), body, reply)
  }
  const interrupt = (unique: bigint): void => {
    const body = Buffer.alloc(8)
    body.writeBigUInt64LE(unique, 0)
    ll.handle(header(Op.INTERRUPT, 99n), body, reply)
  }
  return { read, interrupt, answers, finish: (n: number) => finish?.(n) }
}

test('INTERRUPT of a waiting read answers it EINTR at once, and nothing more when its chunk comes', t => {
  const s = setUp()
  s.read(7n)
  t.deepEqual(s.answers, [])
  s.interrupt(7n)
  t.deepEqual(s.answers, [{ unique: 7n, errno: 4 }])
  s.finish(4096)
  t.is(s.answers.length, 1, 'a cancelled read is never answered twice')
})

test('INTERRUPT of a read already answered, or unknown, is dropped without an answer', t => {
  const s = setUp()
  s.read(8n)
  s.finish(4096)
  t.deepEqual(s.answers, [{ unique: 8n, bytes: 4096 }])
  s.interrupt(8n)
  s.interrupt(12345n)
  t.is(s.answers.length, 1)
})

test("the hand-over exit code is no error's exit code: a successor that fails is counted as a death", t => {
  const codes = Object.values(KIND_STATUS).map(k => k.exit)
  t.false(codes.includes(EXIT_HANDOVER), `${EXIT_HANDOVER} in ${codes.join(', ')}`)
  t.not(EXIT_HANDOVER, 0)
  t.not(EXIT_HANDOVER, 1)
})
