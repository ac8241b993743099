import { readFile } from 'node:fs/promises'
import { httpUrl, S3ConfigSchema, schemaIssues } from '@nydusjs/storage/s3-config'
import { z } from 'zod/v3'
import { NydusdError } from './errors.js'

/** Close to the original nydusd's JSON config, so its users feel at home. */

/** Resilience around every backend (a single one is a chain of one); times in seconds as elsewhere in the config. */
const LinkOptions = {
  retry_limit: z.number().int().min(0).max(10).default(2),
  request_timeout: z.number().positive().default(30),
  concurrency: z.number().int().min(1).max(1024).optional().describe('default 16; 4 for localfs, whose hung reads each hold a thread'),
  breaker_threshold: z.number().int().min(1).default(5),
  breaker_reset: z.number().positive().default(10)
}
const LocalFs = z.strictObject({ ...LinkOptions, type: z.literal('localfs'), config: z.strictObject({ dir: z.string().min(1) }) })
const Http = z.strictObject({
  ...LinkOptions,
  type: z.literal('http'),
  config: z.strictObject({
    url: httpUrl(),
    timeout: z.number().positive().default(30).describe('seconds'),
    connections: z.number().int().min(1).max(256).default(8),
    headers: z.record(z.string(), z.string()).optional()
  })
})

const Registry = z.strictObject({
  ...LinkOptions,
  type: z.literal('registry'),
  config: z.strictObject({
    scheme: z.enum(['http', 'https']).default('https'),
    host: z.string().min(1),
    repo: z.string().min(1),
    auth: z.string().optional().describe('base64 of user:password'),
    registry_token: z.string().optional(),
    docker_config: z.string().optional(),
    skip_verify: z.boolean().default(false),
    ca_file: z.string().optional(),
    timeout: z.number().positive().default(30),
    connect_timeout: z.number().positive().default(10),
    mirrors: z
      .array(
        z.strictObject({
          host: z.string().min(1),
          scheme: z.enum(['http', 'https']).optional(),
          headers: z.record(z.string(), z.string()).optional(),
          auth_through: z.boolean().default(false).describe("send the origin's credentials to this mirror too"),
          failure_limit: z.number().int().min(1).optional().describe("failures that open this mirror's breaker"),
          health_check_interval: z.number().positive().optional().describe('seconds until an open mirror is probed again')
        })
      )
      .default([]),
    // nydus's P2P proxy: the node's dfdaemon, before the registry (and instead of it without `fallback`).
    proxy: z
      .strictObject({
        url: httpUrl().describe("the node's dfdaemon, e.g. http://127.0.0.1:65001"),
        fallback: z.boolean().default(true).describe('to the registry while the proxy fails'),
        ping_url: httpUrl().optional().describe('its health URL, e.g. http://127.0.0.1:65001/_ping'),
        check_interval: z.number().positive().default(5).describe('seconds between pings'),
        use_http: z.boolean().default(false).describe('accepted; requests to the proxy are always plain HTTP here')
      })
      .optional()
  })
})

const S3 = z.strictObject({ ...LinkOptions, type: z.literal('s3'), config: S3ConfigSchema })

/** The node's dfdaemon, read through on behalf of the registry link after it in the chain (only in a chain). */
const Dragonfly = z.strictObject({
  ...LinkOptions,
  type: z.literal('dragonfly'),
  config: z.strictObject({
    proxy: httpUrl().describe("the node's dfdaemon, e.g. http://127.0.0.1:65001"),
    timeout: z.number().positive().default(30).describe('seconds')
  })
})

const Single = z.discriminatedUnion('type', [LocalFs, Http, Registry, S3, Dragonfly])
const Chain = z.strictObject({
  type: z.literal('chain'),
  config: z.strictObject({
    backends: z.array(Single).min(1)
  })
})

export const ConfigSchema = z.strictObject({
  device: z.strictObject({
    backend: z.discriminatedUnion('type', [LocalFs, Http, Registry, S3, Chain]),
    cache: z
      .strictObject({
        type: z.literal('blobcache'),
        config: z.strictObject({
          work_dir: z.string().min(1),
          size_limit: z.number().int().min(0).default(0).describe('bytes; 0 = unlimited')
        })
      })
      .optional()
  }),
  mode: z.literal('direct').default('direct'),
  digest_validate: z.boolean().default(true),
  /** Bytes of blob a read that waits on a miss fetches at least, the chunks after it coming along (nydus's amplify_io). */
  amplify_io: z
    .number()
    .int()
    .min(0)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024),
  /** Ask the backend for every blob's size before mounting: a missing or truncated blob fails the start (ours). */
  check_blobs: z.boolean().default(false),
  enable_xattr: z.boolean().default(true),
  /**
   * FUSE passthrough (ours; kernel 6.9+, direct transport, root, a blobcache): files whose chunks
   * are all cached get a verified, decompressed copy under work_dir/passthrough that the kernel
   * reads itself. Every open then costs a request, so it is off by default.
   */
  fuse_passthrough: z.boolean().default(false),
  /** Ours: decoded chunks kept in memory by the daemon (all its mounts together; the largest of their values applies). */
  memory: z
    .strictObject({
      cache_size: z
        .number()
        .int()
        .min(0)
        .max(1024 * 1024 * 1024)
        .default(16 * 1024 * 1024),
      /** A mount nobody read from for this long lets its buffers go (0: never). */
      idle_release_secs: z.number().int().min(0).max(86_400).default(10)
    })
    .default({}),
  fs_prefetch: z
    .strictObject({
      enable: z.boolean().default(false),
      threads_count: z.number().int().min(1).max(64).default(4),
      merging_size: z
        .number()
        .int()
        .min(0)
        .max(64 * 1024 * 1024)
        .default(128 * 1024),
      bandwidth_rate: z.number().int().min(0).default(0).describe('bytes/s; 0 = unlimited')
    })
    .default({})
})

export type NydusdConfig = z.infer<typeof ConfigSchema>
export type BackendConfig = z.infer<typeof Single>

/** Parses and validates; every wrong field is named in one line. */
export function parseConfig(value: unknown, where: string): NydusdConfig {
  const r = ConfigSchema.safeParse(value)
  if (r.success) return r.data
  throw new NydusdError('ERR_CONFIG', `config ${where}: ${schemaIssues(r.error)}`)
}

export async function loadConfig(path: string): Promise<NydusdConfig> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new NydusdError('ERR_CONFIG', `config ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
  })
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new NydusdError('ERR_CONFIG', `config ${path}: invalid JSON (${(err as Error).message})`)
  }
  return parseConfig(value, path)
}
