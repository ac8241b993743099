import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { libC, type NativeLibrary } from './ffi.js'

let collect: ReturnType<typeof exposeGc> | undefined
let trim: ((pad: number) => number) | null | undefined
let pending = false
let churned = 0

/** Short-lived buffers allocated between two of `noteChurn`'s collections. */
const CHURN_BYTES = 8 * 1024 * 1024

/** V8's --bytecode-old-age default. */
const BYTECODE_OLD_AGE = 5

/**
 * Gives memory that idle buffers held back to the kernel: a full collection
 * (an idle process allocates nothing, so V8 would never run one, and dropped
 * chunk buffers stay resident until it does), then glibc's malloc_trim (freed
 * blocks inside the heap are otherwise kept for reuse). Both are found once;
 * if libc cannot be loaded only the collection runs.
 */
export function returnMemory(): void {
  collect ??= exposeGc()
  // V8 drops the bytecode of functions not run for BYTECODE_OLD_AGE collections (start-up code, config schemas).
  for (let i = 0; i < BYTECODE_OLD_AGE; i++) collect()
  trimHeap()
}

function trimHeap(): void {
  trim ??= libc()?.func('int malloc_trim(size_t pad)') ?? null
  trim?.(0)
}

/** glibc's mallopt parameters. */
const M_MMAP_THRESHOLD = -3
const M_ARENA_MAX = -8

/**
 * Sets glibc's malloc for a daemon whose big buffers come and go: blocks from
 * 128 KiB up are mapped on their own and unmapped when freed (glibc otherwise
 * raises that threshold to the largest block freed so far, and 1 MiB chunk
 * slabs then pile up inside a heap it cannot shrink past the highest one in
 * use), and two arenas, not one per thread of libuv's pool. Some 10-20 MB less
 * resident in a shared daemon after a burst of reads; read speed unchanged.
 * False if libc cannot be loaded.
 */
export function tuneMalloc(): boolean {
  const lib = libc()
  if (lib === undefined) return false
  const mallopt = lib.func('int mallopt(int param, int value)')
  return mallopt(M_MMAP_THRESHOLD, 128 * 1024) === 1 && mallopt(M_ARENA_MAX, 2) === 1
}

/**
 * One full collection, soon (once however often it is asked for before it runs). Chunk buffers
 * are SharedArrayBuffers, whose memory V8 does not count towards its next collection: during a
 * long burst of reads the ones dropped would otherwise pile up (some 100 MB in a shared daemon).
 */
function collectSoon(): void {
  if (pending) return
  pending = true
  setImmediate(() => {
    pending = false
    collect ??= exposeGc()
    collect()
    // The slabs just freed lie inside glibc's heap: given back now, not at the next idle release.
    trimHeap()
  }).unref()
}

/**
 * Counts bytes of buffers the read path allocated (new pool slabs, bootstrap pages read back):
 * one collection per CHURN_BYTES, so those dropped are freed within that much (V8 counts
 * SharedArrayBuffers not at all, and waits for some 64 MiB of other external memory).
 */
export function noteChurn(bytes: number): void {
  churned += bytes
  if (churned < CHURN_BYTES) return
  churned = 0
  collectSoon()
}

/** V8's gc() for this isolate (main thread or worker), exposed without the command-line flag. */
export function exposeGc(): (o?: { type: 'minor' | 'major' }) => void {
  const existing = (globalThis as { gc?: () => void }).gc
  if (existing !== undefined) return existing
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

function libc(): NativeLibrary | undefined {
  try {
    return libC()
  } catch {
    return undefined
  }
}
