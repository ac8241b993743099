/** Dragonfly v1's result codes (the `code` field of every supernode answer). */
export const Code = {
  Success: 200,
  SystemError: 500,
  ParamError: 501,
  TargetNotFound: 502,
  PeerFinish: 600,
  PeerContinue: 601,
  PeerWait: 602,
  PeerLimited: 603,
  SuperFail: 604,
  UnknownError: 605,
  TaskConflict: 606,
  URLNotReachable: 607,
  NeedAuth: 608,
  WaitAuth: 609,
  SourceError: 610
} as const

/** What a peer reports about the piece it last fetched (`result` of /peer/task). */
export const PieceResult = { Fail: 500, Success: 501, Invalid: 502, SemiSuccess: 503 } as const

/** A peer's task status (`status` of /peer/task). */
export const TaskStatus = { Start: 700, Running: 701, Finish: 702 } as const

/** `errorType` of /peer/piece/error. */
export const ClientError = { FileNotExist: 'FILE_NOT_EXIST', DigestMismatch: 'FILE_MD5_NOT_MATCH' } as const

export interface ResultInfo<T = unknown> {
  code: number
  msg?: string
  data?: T
}

/** The supernode's default port, and dfdaemon's (its registry-mirror face). */
export const SUPERNODE_PORT = 8002
export const DFDAEMON_PORT = 65001
/** The header that names a piece assignment's upload token (never Authorization: that is the origin's). */
export const TOKEN_HEADER = 'x-dragonfly-piece-token'
