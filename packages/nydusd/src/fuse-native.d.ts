declare module 'fuse-native' {
  type Cb<T = void> = T extends void ? (err: number) => void : (err: number, value?: T) => void
  export interface FuseOps {
    [op: string]: (...args: any[]) => void
  }
  export interface FuseOpts {
    [opt: string]: unknown
  }
  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOpts)
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    static unmount(mnt: string, cb: (err: Error | null) => void): void
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void
    static ENOENT: number
    static EIO: number
    static EROFS: number
    static ENOTDIR: number
    static EISDIR: number
    static EACCES: number
    static ENODATA: number
    static ERANGE: number
    static EINVAL: number
    static ENOTSUP: number
    static ETIMEDOUT: number
    _fuseOptions(): string
  }
  export type { Cb }
}
