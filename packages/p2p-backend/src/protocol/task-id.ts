import { createHash } from 'node:crypto'

const BLOB = /\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/

/** The OCI blob digest a URL names (`.../v2/<repo>/blobs/sha256:<hex>`), if it names one. */
export function blobDigestOf(url: string): string | undefined {
  try {
    return BLOB.exec(new URL(url).pathname)?.[1]
  } catch {
    return undefined
  }
}

/** The URL without the query parameters `filter` names (dfget's `--filter a&b`): signed URLs of one file are one task. */
export function taskUrl(raw: string, filter: readonly string[] = []): string {
  const u = new URL(raw)
  for (const f of filter) u.searchParams.delete(f)
  u.hash = ''
  return u.toString()
}

/**
 * A task's identity. An OCI blob is its digest, wherever it is served from
 * (two registries, two URLs: one task); anything else is sha256 of the
 * filtered URL and the identifier. Never a header, never the Range: ranges
 * are pieces of the whole task, and credentials must not reach an ID.
 */
export function taskIdOf(rawUrl: string, o: { filter?: readonly string[]; identifier?: string } = {}): string {
  const digest = blobDigestOf(rawUrl)
  if (digest !== undefined && (o.identifier ?? '') === '') return digest.replace(':', '-')
  return createHash('sha256')
    .update(`${taskUrl(rawUrl, o.filter)}\n${o.identifier ?? ''}`)
    .digest('hex')
}

/** `sha256-<hex>` task ids name the digest the finished file must have. */
export function digestOfTask(taskId: string): string | undefined {
  return /^sha256-[0-9a-f]{64}$/.test(taskId) ? taskId.replace('-', ':') : undefined
}

export const TASK_ID = /^(sha256-)?[0-9a-f]{64}$/
