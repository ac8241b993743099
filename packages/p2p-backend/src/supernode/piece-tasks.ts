import type { PieceTask } from '../protocol/messages.js'
import { pieceBounds, rangeString } from '../protocol/pieces.js'
import type { TokenSigner } from '../protocol/token.js'
import type { Assignment } from './scheduler.js'
import type { Peer, PeerTask, Task } from './swarm.js'

/**
 * Assignments as v1's piece tasks, each with its digest from the supernode's
 * copy and an upload token: one signature per parent, covering the pieces
 * `pt` may fetch from it.
 */
export async function pieceTasks(signer: TokenSigner, task: Task, pt: PeerTask, got: Assignment[]): Promise<PieceTask[]> {
  const tokens = new Map<Peer, Promise<string>>()
  for (const a of got)
    if (!tokens.has(a.from))
      tokens.set(
        a.from,
        signer.sign({ task: task.id, src: a.from.id, dst: pt.cid, pieces: got.filter(g => g.from === a.from).map(g => g.piece) })
      )
  return await Promise.all(
    got.map(async a => {
      const b = pieceBounds(a.piece, task.length, task.pieceSize)
      return {
        range: rangeString(b.start, b.end),
        pieceNum: a.piece,
        pieceSize: b.end - b.start + 1,
        pieceMd5: '',
        pieceDigest: `sha256:${task.cdn.digestOf(a.piece)}`,
        cid: a.fromCid,
        peerIp: a.from.ip,
        peerPort: a.from.port,
        path: a.path,
        downLink: 0,
        token: await tokens.get(a.from)!
      }
    })
  )
}
