import { setTimeout as sleep } from 'node:timers/promises'

/** A token bucket in bytes per second, shared by every upload of a node (dfget's --totallimit). */
export class RateLimiter {
  private tokens: number
  private last = Date.now()
  private queue: Promise<void> = Promise.resolve()

  constructor(readonly bytesPerSec: number) {
    this.tokens = Math.min(bytesPerSec, 256 * 1024)
  }

  /** Resolves when `n` bytes may be sent (callers are served in order). */
  async take(n: number): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        const now = Date.now()
        this.tokens = Math.min(this.bytesPerSec, this.tokens + ((now - this.last) / 1000) * this.bytesPerSec)
        this.last = now
        if (this.tokens >= n || this.tokens >= this.bytesPerSec) {
          this.tokens -= n
          return
        }
        await sleep(Math.max(1, Math.ceil(((n - this.tokens) / this.bytesPerSec) * 1000)))
      }
    })
    this.queue = turn.catch(() => {})
    await turn
  }
}
