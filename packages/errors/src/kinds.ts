/**
 * What went wrong, in the few kinds every surface understands (containerd's
 * errdefs): each kind has one exit code, one errno, one HTTP and one gRPC status.
 */
export type ErrorKind =
  | 'invalid-argument'
  | 'config'
  | 'corrupt'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'permission-denied'
  | 'unavailable'
  | 'deadline-exceeded'
  | 'unimplemented'
  | 'internal'

export interface KindStatus {
  /** CLI exit code (sysexits.h where one fits). */
  exit: number
  /** errno name, as a FUSE reply or a syscall-like API reports it. */
  errno: 'EINVAL' | 'EIO' | 'ENOENT' | 'EEXIST' | 'EBUSY' | 'EACCES' | 'ETIMEDOUT' | 'ENOSYS'
  http: number
  /** gRPC status code (google.rpc.Code). */
  grpc: number
}

export const KIND_STATUS: Readonly<Record<ErrorKind, KindStatus>> = {
  'invalid-argument': { exit: 2, errno: 'EINVAL', http: 400, grpc: 3 },
  config: { exit: 78, errno: 'EINVAL', http: 400, grpc: 3 },
  corrupt: { exit: 65, errno: 'EIO', http: 422, grpc: 15 },
  'not-found': { exit: 66, errno: 'ENOENT', http: 404, grpc: 5 },
  'already-exists': { exit: 73, errno: 'EEXIST', http: 409, grpc: 6 },
  'failed-precondition': { exit: 75, errno: 'EBUSY', http: 409, grpc: 9 },
  'permission-denied': { exit: 77, errno: 'EACCES', http: 403, grpc: 7 },
  unavailable: { exit: 69, errno: 'EIO', http: 503, grpc: 14 },
  'deadline-exceeded': { exit: 69, errno: 'ETIMEDOUT', http: 504, grpc: 4 },
  unimplemented: { exit: 69, errno: 'ENOSYS', http: 501, grpc: 12 },
  internal: { exit: 70, errno: 'EIO', http: 500, grpc: 13 }
}
