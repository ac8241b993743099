import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { TokenSigner } from '../protocol/token.js'

const KEY = 'dragonfly:supernode:token-key'
const TTL_S = 24 * 3600

/**
 * What supernodes share through Redis, so that one can take over another's
 * peers: the key that signs upload tokens (a token from either verifies on
 * every node), each task's piece digests (a supernode that never copied a
 * piece still schedules it between peers, checked), and the peers excluded
 * from a task. Never a header or a credential: callers bring theirs again
 * when they register. Redis down: each supernode goes on alone.
 */
export class SharedState {
  private readonly redis: Redis

  constructor(
    url: string,
    private readonly log: Logger
  ) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: true, lazyConnect: false })
    this.redis.on('error', (err: Error) => log.warn({ err: err.message }, 'redis'))
  }

  /** The signing key every supernode of this Redis uses: made by the first, read by the rest. */
  async signer(): Promise<TokenSigner> {
    for (let i = 0; i < 3; i++) {
      const got = await this.redis.get(KEY)
      if (got !== null) {
        const { jwk, pem } = JSON.parse(got) as { jwk: never; pem: string }
        return await TokenSigner.fromJwk(jwk, pem)
      }
      const mine = await TokenSigner.generate()
      const set = await this.redis.set(KEY, JSON.stringify({ jwk: await mine.exportJwk(), pem: mine.publicPem }), 'NX')
      if (set === 'OK') return mine
    }
    throw new Error('redis: could not agree on a token key')
  }

  async digests(taskId: string): Promise<Map<number, string>> {
    const out = new Map<number, string>()
    try {
      const all = await this.redis.hgetall(`dragonfly:task:${taskId}:digests`)
      for (const [k, v] of Object.entries(all)) if (/^\d+$/.test(k) && /^[0-9a-f]{64}$/.test(v)) out.set(Number(k), v)
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'redis: digests not read')
    }
    return out
  }

  publishDigest(taskId: string, n: number, hex: string): void {
    const key = `dragonfly:task:${taskId}:digests`
    this.redis
      .multi()
      .hset(key, String(n), hex)
      .expire(key, TTL_S)
      .exec()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'redis: digest not shared'))
  }

  async excluded(taskId: string): Promise<string[]> {
    return await this.redis.smembers(`dragonfly:task:${taskId}:excluded`).catch(() => [])
  }

  exclude(taskId: string, peerId: string): void {
    const key = `dragonfly:task:${taskId}:excluded`
    this.redis
      .multi()
      .sadd(key, peerId)
      .expire(key, TTL_S)
      .exec()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'redis: exclusion not shared'))
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect())
  }
}
