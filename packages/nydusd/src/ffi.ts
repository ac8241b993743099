import { createRequire } from 'node:module'

/** A C function bound by koffi; the callers know its signature. */
export type NativeFunction = (...args: any[]) => any

export interface NativeLibrary {
  func: (signature: string) => NativeFunction
}

/** The part of koffi's API nydusd uses. */
export interface Koffi {
  load: (lib: string | null) => NativeLibrary
  proto: (signature: string) => unknown
  pointer: (type: unknown) => unknown
  register: (fn: NativeFunction, type: unknown) => unknown
  unregister: (callback: unknown) => void
  alloc: (type: string, count: number) => unknown
  free: (pointer: unknown) => void
  errno: () => number
}

let koffi: Koffi | undefined
let libc: NativeLibrary | undefined

/**
 * koffi, loaded once: this platform's binding itself where it is found.
 * koffi's index.js also loads https, tls, zlib and crypto for its download
 * tools and only adds deprecated aliases: about 1 MB of an idle daemon.
 */
export function ffi(): Koffi {
  if (koffi !== undefined) return koffi
  const load = createRequire(import.meta.url)
  try {
    koffi = load(`koffi/build/koffi/${process.platform}_${process.arch}/koffi.node`) as Koffi
  } catch {
    koffi = load('koffi') as Koffi
  }
  return koffi
}

/** glibc, opened once (through koffi); throws when it cannot be. */
export function libC(): NativeLibrary {
  libc ??= ffi().load('libc.so.6')
  return libc
}
