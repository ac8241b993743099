import { readFile } from 'node:fs/promises'
import { schemaIssues } from '@nydusjs/storage/s3-config'
import { parse } from 'smol-toml'
import { z } from 'zod/v3'
import { SnapshotterError } from './errors.js'

/** nydus-snapshotter's config.toml keys, those this snapshotter has so far (same names and sections). */
const Schema = z.strictObject({
  version: z.literal(1).default(1),
  root: z.string().min(1).default('/var/lib/containerd-nydus'),
  address: z.string().min(1).default('/run/containerd-nydus/containerd-nydus-grpc.sock'),
  /** "dedicated": one nydusd per image; "shared": one nydusd for the node, images mounted through its API. */
  daemon_mode: z.enum(['dedicated', 'shared']).default('dedicated'),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info') }).default({}),
  daemon: z
    .strictObject({
      nydusd_path: z.string().min(1).optional(),
      nydusd_config: z.string().min(1).optional(),
      /**
       * "restart": a dead nydusd is started again on its mountpoint (running containers see ENOTCONN);
       * "failover": a new nydusd takes the dead one's FUSE session over (running containers notice nothing);
       * "none": it stays dead.
       */
      recover_policy: z.enum(['restart', 'failover', 'none']).default('restart')
    })
    .default({}),
  snapshot: z
    .strictObject({
      enable_nydus_overlayfs: z.boolean().default(false),
      /** Ours: a converted image whose lazy mount fails (FUSE, the daemon; not the image) is copied natively. */
      native_fallback: z.boolean().default(true)
    })
    .default({}),
  /** Prometheus text at GET /metrics on host:port (nydus-snapshotter's default port is 9110); empty: off. */
  metrics: z.strictObject({ address: z.string().default('') }).default({}),
  /** The system API (GET /api/v1/daemons, /metrics) on a unix socket; empty address: system.sock beside the gRPC socket. */
  system: z
    .strictObject({
      enable: z.boolean().default(true),
      address: z.string().default('')
    })
    .default({})
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
  throw new SnapshotterError('ERR_CONFIG', `config ${path ?? '(defaults)'}: ${schemaIssues(r.error)}`)
}

/** "host:port" or ":port" (all interfaces, as Go's net.Listen reads it) to a listen address. */
export function parseListenAddress(addr: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(addr)
  const port = Number(m?.[2])
  if (m === null || port > 65535) throw new SnapshotterError('ERR_CONFIG', `metrics address ${JSON.stringify(addr)} is not host:port`)
  return { host: m[1] === '' ? '0.0.0.0' : m[1].replace(/^\[(.*)\]$/, '$1'), port }
}
