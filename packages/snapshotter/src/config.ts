import { readFile } from 'node:fs/promises'
import { parse } from 'smol-toml'
import { z } from 'zod'
import { SnapshotterError } from './errors.js'

/** nydus-snapshotter's config.toml keys, those this snapshotter has so far. */
const Schema = z.strictObject({
  version: z.literal(1).default(1),
  root: z.string().min(1).default('/var/lib/containerd-nydus'),
  address: z.string().min(1).default('/run/containerd-nydus/containerd-nydus-grpc.sock'),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info') }).prefault({})
})

export type SnapshotterConfig = z.infer<typeof Schema>

/** The config file (absent: the defaults), every wrong field named in one line. */
export async function loadConfig(path: string | undefined): Promise<SnapshotterConfig> {
  let value: unknown = {}
  if (path !== undefined) {
    const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new SnapshotterError('ERR_CONFIG', `config ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
    })
    try {
      value = parse(text)
    } catch (err) {
      throw new SnapshotterError('ERR_CONFIG', `config ${path}: invalid TOML (${(err as Error).message.split('\n')[0]})`)
    }
  }
  const r = Schema.safeParse(value)
  if (r.success) return r.data
  const issues = r.error.issues.map(i => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')
  throw new SnapshotterError('ERR_CONFIG', `config ${path ?? '(defaults)'}: ${issues}`)
}
