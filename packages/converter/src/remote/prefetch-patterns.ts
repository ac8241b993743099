import { readFile } from 'node:fs/promises'
import picomatch from 'picomatch'
import { walkTree, type RafsTree } from '@nydusjs/rafs'
import { ConverterError } from '../errors.js'

/** One path or glob per line (`/usr/bin/python3`, `/usr/lib/**\/*.so`); blank lines and `#` comments skipped. */
export async function readPrefetchPatterns(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch((err: Error) => {
    throw new ConverterError('ERR_SOURCE_NOT_FOUND', `prefetch patterns ${path}: ${err.message}`)
  })
  return text
    .split('\n')
    .map(l => l.trim())
    .filter(l => l !== '' && !l.startsWith('#'))
    .map(l => l.replace(/^\/+/, ''))
}

/**
 * The paths of `tree` the patterns name, in pattern order: a plain path as is
 * (a directory stands for everything under it, as in the original), a glob
 * expanded against every path in the image. Unmatched patterns are returned.
 */
export function expandPrefetch(tree: RafsTree, patterns: string[]): { paths: Buffer[]; unmatched: string[] } {
  const all = [...walkTree(tree.root)].map(e => e.path.toString('latin1'))
  const exists = new Set(all)
  const out: string[] = []
  const seen = new Set<string>()
  const unmatched: string[] = []
  for (const p of patterns) {
    const hits = picomatch.scan(p).isGlob ? matching(all, p) : exists.has(p) ? [p] : []
    if (hits.length === 0) unmatched.push(p)
    for (const h of hits)
      if (!seen.has(h)) {
        seen.add(h)
        out.push(h)
      }
  }
  return { paths: out.map(p => Buffer.from(p, 'latin1')), unmatched }
}

function matching(paths: string[], glob: string): string[] {
  const m = picomatch(glob, { dot: true })
  return paths.filter(p => m(p))
}
