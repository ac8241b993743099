import type { Peer, PeerTask, Task } from './swarm.js'

export interface SchedulerLimits {
  /** Pieces one peer downloads at once. */
  maxDown: number
  /** Pieces one peer uploads at once. */
  maxUp: number
  /** Pieces the supernode's own copy serves at once. */
  maxUpSupernode: number
  /** A peer not heard from for this long is not a parent. */
  peerExpireMs: number
}

export const DEFAULT_LIMITS: SchedulerLimits = { maxDown: 4, maxUp: 5, maxUpSupernode: 16, peerExpireMs: 30_000 }

export interface Assignment {
  piece: number
  from: Peer
  /** The cid the piece comes from (the supernode's own for its copy). */
  fromCid: string
  path: string
}

/**
 * Which pieces a peer fetches next and from whom: the pieces a range reader
 * waits for first, then the rarest in the swarm; each from the parent with
 * the most free upload slots, the best success ratio and speed (a parent far
 * slower than the others is left out), the supernode's copy only when no
 * peer can serve. Never the peer itself, never a peer excluded from the task.
 */
export class Scheduler {
  constructor(
    readonly limits: SchedulerLimits,
    private readonly supernode: Peer,
    private readonly supernodeCid: string
  ) {}

  schedule(task: Task, pt: PeerTask, now: number): Assignment[] {
    const free = this.limits.maxDown - pt.inflight.size
    if (free <= 0) return []
    const out: Assignment[] = []
    for (const n of this.candidates(task, pt)) {
      if (out.length >= free) break
      if (task.cdn.digestOf(n) === undefined) {
        // Not copied yet: a range reader's piece is fetched now; a whole download waits for the stream.
        if (pt.wants.includes(n)) task.cdn.want(n)
        continue
      }
      const a = this.parentFor(task, pt, n, now)
      if (a === undefined) continue
      pt.inflight.set(n, { from: a.from, at: now })
      a.from.uploading++
      if (a.from === this.supernode) task.fromCdn[n]++
      out.push(a)
    }
    return out
  }

  /** Wanted pieces in the reader's order, then (whole downloads) the rest, rarest first. */
  private candidates(task: Task, pt: PeerTask): number[] {
    const open = (n: number): boolean => pt.have[n] === 0 && !pt.inflight.has(n)
    const wanted = pt.wants.filter(open)
    if (!pt.whole) return wanted
    const rest: number[] = []
    for (let n = 0; n < task.count; n++) if (open(n) && !wanted.includes(n)) rest.push(n)
    // Rarest first; among equals, an order of this peer's own, so peers spread over the pieces.
    const salt = hash(pt.cid)
    rest.sort((a, b) => task.copies[a] - task.copies[b] || ((a * 2654435761) ^ salt) - ((b * 2654435761) ^ salt))
    return [...wanted, ...rest]
  }

  private parentFor(task: Task, pt: PeerTask, n: number, now: number): Assignment | undefined {
    const cands: PeerTask[] = []
    for (const o of task.peers.values()) {
      const p = o.peer
      if (o.have[n] !== 1 || p.id === pt.peer.id || task.excluded.has(p.id)) continue
      if (p.uploading >= this.limits.maxUp || now - p.lastSeen > this.limits.peerExpireMs) continue
      // Three failed uploads in a row (a node killed, or drowning): it rests for a while.
      if (p.failStreak >= 3 && now - p.lastFail < REST_MS) continue
      cands.push(o)
    }
    const best = this.best(cands, task)
    if (best !== undefined) return { piece: n, from: best.peer, fromCid: best.cid, path: best.path }
    // The supernode's copy feeds a piece to one peer at a time while nobody else has it: the swarm spreads it
    // from there. A piece some peer has (all its holders busy) or a range reader's waiting piece may go to more.
    const waited = pt.wants.includes(n)
    if (!task.cdn.has(n)) {
      // Known from another supernode, held by no free peer: this copy fetches it.
      task.cdn.want(n)
      return undefined
    }
    if (this.supernode.uploading >= this.limits.maxUpSupernode) return undefined
    if (!waited && task.fromCdn[n] >= (task.copies[n] === 0 ? 1 : 2)) return undefined
    // First copies spread over the peers (super-seeding): a peer gets a piece nobody has from the supernode's
    // copy only while it is the sole holder of no other piece, so no peer becomes the only source of many
    // pieces and the uploader of most of the swarm's bytes.
    if (!waited && this.superSeeding(task, pt)) return undefined
    return { piece: n, from: this.supernode, fromCid: this.supernodeCid, path: `/peer/file/${task.id}` }
  }

  /**
   * Whether `pt` must wait for the supernode's next new piece: it has one on the way from there already, or
   * it is the only holder of a piece another whole download still lacks. With no other whole download
   * (alone, or beside range readers only), nobody would take its pieces: no wait.
   */
  private superSeeding(task: Task, pt: PeerTask): boolean {
    const now = Date.now()
    const others = [...task.peers.values()].filter(o => o !== pt && o.whole && o.haveCount < task.count && now - o.lastPull < PULLING_MS)
    if (others.length === 0) return false
    for (const a of pt.inflight.values()) if (a.from === this.supernode) return true
    for (let n = 0; n < task.count; n++) if (pt.have[n] === 1 && task.copies[n] === 1 && others.some(o => o.have[n] === 0)) return true
    return false
  }

  private best(cands: PeerTask[], task: Task): PeerTask | undefined {
    if (cands.length === 0) return undefined
    // Past twice the fair share of this task's uploads (and two pieces), a parent rests: the swarm waits
    // a moment for another holder rather than letting one node carry it.
    const cap = (2 * task.peerUploaded) / Math.max(1, task.peers.size) + 2 * task.pieceSize
    cands = cands.filter(c => c.peer.uploaded <= cap)
    if (cands.length === 0) return undefined
    const speeds = cands.map(c => c.peer.speed).filter(s => s > 0)
    const meanUp = cands.reduce((sum, c) => sum + c.peer.uploaded, 0) / cands.length
    const median = speeds.length >= 3 ? speeds.sort((a, b) => a - b)[Math.floor(speeds.length / 2)] : 0
    let best: PeerTask | undefined
    let bestScore = -1
    for (const c of cands) {
      const p = c.peer
      // Far slower than the rest: another parent serves this piece.
      if (median > 0 && p.speed > 0 && p.speed < median / 4 && cands.length > 1) continue
      const ratio = (p.ok + 1) / (p.ok + p.failed + 1)
      // Slower than the median costs a parent; faster earns nothing (it would end up carrying the swarm).
      const speed = median > 0 && p.speed > 0 ? Math.min(1, p.speed / median) : 1
      // A parent that has uploaded more than the others yields to them: no node carries the swarm.
      const share = ((meanUp + 1) / (p.uploaded + meanUp + 1)) ** 2
      const score = (this.limits.maxUp - p.uploading) * ratio * speed * share + Math.random() * 0.01
      if (score > bestScore) {
        best = c
        bestScore = score
      }
    }
    return best
  }
}

/** How long a parent whose uploads keep failing is left out. */
const REST_MS = 15_000
/** A whole download that asked for pieces this recently is still downloading. */
const PULLING_MS = 10_000

function hash(s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h >>> 0
}
