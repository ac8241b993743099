import type { CdnTask } from './cdn.js'

/** A node that serves pieces: a dfdaemon or a dfget (`ip:port`), or the supernode itself. */
export interface Peer {
  id: string
  ip: string
  port: number
  lastSeen: number
  /** Pieces assigned to be fetched from it and not yet reported. */
  uploading: number
  ok: number
  failed: number
  /** Bytes per ms, a moving average of its reported piece transfers. */
  speed: number
  /** Bad pieces it sent that the supernode's own copy proved bad. */
  reports: number
  /** Piece bytes it uploaded (reported by the receivers). */
  uploaded: number
  /** Failed uploads in a row, and when the last one was: a parent that keeps failing (gone, overloaded) rests. */
  failStreak: number
  lastFail: number
}

/** One peer's part in one task: a cid (v1's client id) and the pieces it has. */
export interface PeerTask {
  cid: string
  peer: Peer
  have: Uint8Array
  haveCount: number
  /** Assigned and not reported: piece -> where from and since when. */
  inflight: Map<number, { from: Peer; at: number }>
  /** Pieces a range reader asked for, first served. */
  wants: number[]
  whole: boolean
  path: string
  /** When it last asked for pieces: only peers that do are waited for (super-seeding). */
  lastPull: number
}

export interface Task {
  id: string
  url: string
  length: number
  pieceSize: number
  count: number
  /** Needs credentials at the origin: every caller's are checked there. */
  private: boolean
  headers: Record<string, string>
  cdn: CdnTask
  peers: Map<string, PeerTask>
  /** Peers (ids) proved to send bad pieces of this task. */
  excluded: Set<string>
  /** How many peers have each piece (rarest first). */
  copies: Uint16Array
  /** Per piece, assignments from the supernode's copy not yet reported: it feeds each new piece to few peers. */
  fromCdn: Uint16Array
  /** Piece bytes peers uploaded to each other in this task (the fair share is this over the peers). */
  peerUploaded: number
  lastUsed: number
}

export const newPeer = (id: string, ip: string, port: number, lastSeen: number): Peer => ({
  id,
  ip,
  port,
  lastSeen,
  uploading: 0,
  ok: 0,
  failed: 0,
  speed: 0,
  reports: 0,
  uploaded: 0,
  failStreak: 0,
  lastFail: 0
})

export const newPeerTask = (cid: string, peer: Peer, count: number, path: string, whole: boolean): PeerTask => ({
  cid,
  peer,
  have: new Uint8Array(count),
  haveCount: 0,
  inflight: new Map(),
  wants: [],
  whole,
  path,
  lastPull: 0
})

export function markHave(task: Task, pt: PeerTask, n: number): void {
  if (pt.have[n] === 1) return
  pt.have[n] = 1
  pt.haveCount++
  task.copies[n]++
}

/** An assignment of piece `n` to `pt` ends (reported, timed out, or its peer left): the parent's slot is free. */
export function release(task: Task, pt: PeerTask, n: number): { from: Peer } | undefined {
  const a = pt.inflight.get(n)
  if (a === undefined) return undefined
  pt.inflight.delete(n)
  a.from.uploading = Math.max(0, a.from.uploading - 1)
  if (a.from.id === 'supernode' && task.fromCdn[n] > 0) task.fromCdn[n]--
  return a
}

/** A parent's record after an upload of piece `n` ended: success ratio, fail streak, bytes, speed (a moving average). */
export function recordUpload(task: Task, from: Peer, n: number, success: boolean, costMs: number, isSupernode: boolean): void {
  const size = Math.min(task.length, (n + 1) * task.pieceSize) - n * task.pieceSize
  if (success) {
    from.ok++
    from.failStreak = 0
    from.uploaded += size
    if (!isSupernode) task.peerUploaded += size
    if (costMs > 0) from.speed = from.speed === 0 ? size / costMs : from.speed * 0.7 + (size / costMs) * 0.3
  } else {
    from.failed++
    from.failStreak++
    from.lastFail = Date.now()
  }
}

/** The piece is no longer offered by `pt` (it left, or was found bad). */
export function dropPeerTask(task: Task, pt: PeerTask): void {
  for (let n = 0; n < pt.have.length; n++) if (pt.have[n] === 1) task.copies[n]--
  for (const n of [...pt.inflight.keys()]) release(task, pt, n)
  task.peers.delete(pt.cid)
}
