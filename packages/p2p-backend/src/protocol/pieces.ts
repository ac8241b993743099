const MiB = 1024 * 1024

/** Dragonfly v1's rule: 4 MiB up to 200 MiB, then 1 MiB more per 100 MiB, at most 15 MiB. */
export function pieceSizeFor(length: number): number {
  if (length <= 200 * MiB) return 4 * MiB
  const gaps = Math.floor(length / (100 * MiB))
  return Math.min((gaps - 2) * MiB + 4 * MiB, 15 * MiB)
}

/** The piece size a task gets: v1's rule, or a smaller hint (lazy readers ask for 1 MiB), never below 64 KiB. */
export function choosePieceSize(length: number, hint?: number): number {
  const rule = pieceSizeFor(length)
  if (hint === undefined || !Number.isInteger(hint) || hint <= 0) return rule
  return Math.max(64 * 1024, Math.min(rule, hint))
}

export const pieceCount = (length: number, pieceSize: number): number => Math.max(1, Math.ceil(length / pieceSize))

/** Bytes [start, end] of piece `n` (inclusive end, as v1's `range` strings). */
export function pieceBounds(n: number, length: number, pieceSize: number): { start: number; end: number } {
  const start = n * pieceSize
  return { start, end: Math.min(length, start + pieceSize) - 1 }
}

export const rangeString = (start: number, end: number): string => `${start}-${end}`

/** Parses v1's "start-end"; undefined when malformed. */
export function parseRange(s: string | null | undefined): { start: number; end: number } | undefined {
  const m = /^(\d{1,15})-(\d{1,15})$/.exec(s ?? '')
  if (m === null) return undefined
  const start = Number(m[1])
  const end = Number(m[2])
  return end >= start ? { start, end } : undefined
}

/** The pieces covering bytes [offset, offset + length). */
export function piecesCovering(offset: number, length: number, pieceSize: number): number[] {
  const first = Math.floor(offset / pieceSize)
  const last = Math.floor((offset + length - 1) / pieceSize)
  return Array.from({ length: last - first + 1 }, (_, i) => first + i)
}

/**
 * A single `bytes=` range of a file of `size` bytes: [start, end] inclusive,
 * 'none' without a Range header, undefined when unsatisfiable or malformed
 * (multiple ranges are refused: one range maps onto pieces).
 */
export function parseHttpRange(header: string | undefined, size: number): { start: number; end: number } | 'none' | undefined {
  if (header === undefined || header === '') return 'none'
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0 || size === 0) return undefined
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  return start < size && end >= start ? { start, end } : undefined
}
