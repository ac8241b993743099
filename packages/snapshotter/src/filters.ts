import { SnapshotterError } from './errors.js'

/** What a filter can look at (containerd's snapshot fieldpaths). */
export interface Filterable {
  name: string
  parent: string
  kind: string
  labels: Record<string, string>
}

interface Clause {
  path: string[]
  op?: '==' | '!=' | '~='
  value?: string
}

type Predicate = (s: Filterable) => boolean

/**
 * containerd's filter syntax, as its clients send it to snapshotters:
 * `labels."containerd.io/snapshot.ref"==sha256:…,parent==x` (a comma is AND;
 * the request's filters are ORed). Operators `==`, `!=`, `~=` (regexp), or a
 * bare field for presence. An empty list matches everything.
 */
export function compileFilters(filters: readonly string[]): Predicate {
  const alts = filters.filter(f => f.trim() !== '').map(compileOne)
  if (alts.length === 0) return () => true
  return s => alts.some(p => p(s))
}

function compileOne(text: string): Predicate {
  const clauses = splitTop(text, ',').map(c => parseClause(c.trim(), text))
  return s => clauses.every(c => test(c, s))
}

function parseClause(c: string, whole: string): Clause {
  const path: string[] = []
  let i = 0
  const bad = (why: string): never => {
    throw new SnapshotterError('ERR_BAD_ARGUMENT', `filter ${JSON.stringify(whole)}: ${why}`)
  }
  for (;;) {
    if (c[i] === '"') {
      const end = c.indexOf('"', i + 1)
      if (end === -1) bad('unterminated quote')
      path.push(c.slice(i + 1, end))
      i = end + 1
    } else {
      const m = /^[A-Za-z0-9_./-]+?(?=\.|==|!=|~=|$)/.exec(c.slice(i))
      if (m === null) bad(`expected a field at ${JSON.stringify(c.slice(i))}`)
      path.push(m![0])
      i += m![0].length
    }
    if (c[i] === '.') {
      i++
      continue
    }
    break
  }
  if (i >= c.length) return { path }
  const op = c.slice(i, i + 2)
  if (op !== '==' && op !== '!=' && op !== '~=') bad(`unknown operator at ${JSON.stringify(c.slice(i))}`)
  let value = c.slice(i + 2)
  if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1)
  else if (value.startsWith('/') && value.endsWith('/') && value.length >= 2) value = value.slice(1, -1)
  if (op === '~=') {
    try {
      new RegExp(value)
    } catch {
      bad(`invalid regular expression ${JSON.stringify(value)}`)
    }
  }
  return { path, op: op as Clause['op'], value }
}

function field(c: Clause, s: Filterable): string | undefined {
  const [head, ...rest] = c.path
  if (head === 'labels') return rest.length === 0 ? undefined : s.labels[rest.join('.')]
  if (rest.length > 0) return undefined
  if (head === 'name') return s.name
  if (head === 'parent') return s.parent
  if (head === 'kind') return s.kind.toLowerCase()
  return undefined
}

function test(c: Clause, s: Filterable): boolean {
  const v = field(c, s)
  // A bare field asks for presence; a snapshot without a parent has none, yet matches `parent==`.
  if (c.op === undefined) return v !== undefined && (c.path[0] !== 'parent' || v !== '')
  const want = c.path[0] === 'kind' ? (c.value ?? '').toLowerCase() : c.value
  if (c.op === '==') return v === want
  if (c.op === '!=') return v !== want
  return v !== undefined && new RegExp(want ?? '').test(v)
}

/** Splits on `sep` outside double quotes. */
function splitTop(s: string, sep: string): string[] {
  const out: string[] = []
  let cur = ''
  let quoted = false
  for (const ch of s) {
    if (ch === '"') quoted = !quoted
    if (ch === sep && !quoted) {
      out.push(cur)
      cur = ''
    } else cur += ch
  }
  out.push(cur)
  return out
}
