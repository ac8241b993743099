import { z } from 'zod/v3'

/** POST /peer/registry: Dragonfly v1's field names; `pieceSizeHint` and `want` are ours. */
export const RegisterRequest = z.object({
  rawURL: z.string().min(1).max(8192),
  taskURL: z.string().max(8192).optional(),
  cID: z.string().min(1).max(256),
  IP: z.string().max(64).optional(),
  hostName: z.string().max(256).optional(),
  port: z.number().int().min(1).max(65535),
  path: z.string().max(1024).optional(),
  headers: z.array(z.string().max(16384)).max(64).optional(),
  identifier: z.string().max(1024).optional(),
  md5: z.string().max(128).optional(),
  version: z.string().max(64).optional(),
  callSystem: z.string().max(256).optional(),
  dfdaemon: z.boolean().optional(),
  filter: z.array(z.string().max(256)).max(64).optional(),
  /** The digest the finished file must have (dfget --digest), checked by the supernode's CDN too. */
  digest: z
    .string()
    .regex(/^sha256:[0-9a-f]{64}$/)
    .optional(),
  /** A smaller piece size for lazy readers (1 MiB); the supernode takes it when it makes the task. */
  pieceSizeHint: z.number().int().positive().optional(),
  /** The pieces this peer already holds (base64 of one byte per piece): a peer migrating from a dead supernode. */
  have: z
    .string()
    .max(1 << 20)
    .optional()
})
export type RegisterRequest = z.infer<typeof RegisterRequest>

export interface RegisterData {
  taskId: string
  fileLength: number
  pieceSize: number
  cdnSource: 'supernode'
  /** The public key (SPKI PEM) that signs this supernode's upload tokens. */
  tokenKey: string
  /** The peer id the supernode knows this node by (ip:port). */
  peerId: string
}

/** One piece to fetch, as v1's PullPieceTaskResponseContinueData, plus its sha256 and the upload token. */
export interface PieceTask {
  range: string
  pieceNum: number
  pieceSize: number
  /** v1's field, kept empty: pieces are checked by `pieceDigest`. */
  pieceMd5: string
  /** sha256 of the piece, from the supernode's own copy. */
  pieceDigest: string
  cid: string
  peerIp: string
  peerPort: number
  path: string
  downLink: number
  token: string
}

export const HeartbeatRequest = z.object({
  IP: z.string().max(64).optional(),
  port: z.number().int().min(1).max(65535),
  cID: z.string().max(256).optional()
})

export const PreheatRequest = z.object({
  type: z.enum(['file', 'image']).default('file'),
  url: z.string().min(1).max(8192),
  headers: z.record(z.string(), z.string().max(16384)).optional(),
  filter: z.string().max(1024).optional(),
  identifier: z.string().max(1024).optional()
})
