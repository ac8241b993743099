import test from 'ava'
import type { CdnTask } from '../../src/supernode/cdn.js'
import { DEFAULT_LIMITS, Scheduler } from '../../src/supernode/scheduler.js'
import { markHave, newPeer, newPeerTask, release, type Peer, type PeerTask, type Task } from '../../src/supernode/swarm.js'

const PIECES = 8

/** A task of 8 pieces whose CDN copy holds every piece (or only those `cdnHas` names). */
function task(cdnHas: (n: number) => boolean = () => true): { task: Task; wanted: number[] } {
  const wanted: number[] = []
  const cdn = { digestOf: (n: number) => (cdnHas(n) ? 'd' : undefined), has: cdnHas, want: (n: number) => wanted.push(n) }
  const t: Task = {
    id: 'a'.repeat(64),
    url: 'http://origin/blob',
    length: PIECES * 1024,
    pieceSize: 1024,
    count: PIECES,
    private: false,
    headers: {},
    cdn: cdn as unknown as CdnTask,
    peers: new Map(),
    excluded: new Set(),
    copies: new Uint16Array(PIECES),
    fromCdn: new Uint16Array(PIECES),
    peerUploaded: 0,
    lastUsed: 0
  }
  return { task: t, wanted }
}

function join(t: Task, id: string, have: number[] = [], whole = true): PeerTask {
  const pt = newPeerTask(id, newPeer(id, '198.18.0.1', 1, Date.now()), t.count, `/peer/file/${t.id}`, whole)
  t.peers.set(id, pt)
  for (const n of have) markHave(t, pt, n)
  return pt
}

/** A scheduler with its own supernode entry (tests run at once: none shares upload counts). */
function scheduler(): { sched: Scheduler; supernode: Peer } {
  const supernode = newPeer('supernode', '', 0, Infinity)
  return { sched: new Scheduler(DEFAULT_LIMITS, supernode, 'supernode'), supernode }
}

test('rarest pieces first, at most maxDown at once, never from the peer itself', t => {
  const { task: tk } = task()
  join(tk, 'a', [0, 1, 2, 3, 4, 5])
  join(tk, 'b', [0, 1, 2, 3])
  const me = join(tk, 'me', [0])
  const { sched } = scheduler()
  const got = sched.schedule(tk, me, Date.now())
  t.is(got.length, DEFAULT_LIMITS.maxDown)
  t.true(got.every(a => a.from.id !== 'me'))
  // Pieces 4 and 5 are held once, 1-3 twice; 6 and 7 by nobody (the CDN copy may serve one peer each).
  const order = got.map(a => a.piece)
  t.true(order.indexOf(4) >= 0 && order.indexOf(5) >= 0, `rare pieces chosen: ${order}`)
  t.true(
    order.every(n => n !== 0),
    'never a piece it has'
  )
  t.deepEqual(sched.schedule(tk, me, Date.now()), [], 'no free download slot')
})

test("a range reader's wanted pieces come first; a piece the CDN lacks is fetched for it", t => {
  const { task: tk, wanted } = task(n => n !== 6)
  join(tk, 'a', [1, 2, 3, 4, 5, 7])
  const reader = join(tk, 'r', [], false)
  reader.wants.push(7, 6)
  const got = scheduler().sched.schedule(tk, reader, Date.now())
  t.deepEqual(
    got.map(a => a.piece),
    [7],
    'a range reader gets only what it wants'
  )
  t.deepEqual(wanted, [6])
})

test('an excluded peer, a busy peer and a silent peer are never parents; the supernode serves instead', t => {
  const { task: tk } = task()
  const bad = join(tk, 'bad', [0])
  tk.excluded.add(bad.peer.id)
  const busy = join(tk, 'busy', [1])
  busy.peer.uploading = DEFAULT_LIMITS.maxUp
  const silent = join(tk, 'silent', [2])
  silent.peer.lastSeen = Date.now() - DEFAULT_LIMITS.peerExpireMs - 1
  const me = join(tk, 'me', [3, 4, 5, 6, 7])
  const { sched, supernode } = scheduler()
  const got = sched.schedule(tk, me, Date.now())
  t.deepEqual(got.map(a => a.piece).sort(), [0, 1, 2])
  t.true(got.every(a => a.from === supernode))
  t.is(supernode.uploading, 3)
  for (const a of got) release(tk, me, a.piece)
  t.is(supernode.uploading, 0, 'released slots are free again')
})
