import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { z } from 'zod/v3'
import { NydusdError } from './errors.js'

/** One mount of a shared daemon as its successor needs it: what to mount, and who holds its session. */
export interface HeldMount {
  mountpoint: string
  source: string
  config: Record<string, unknown>
  /** The pid of the SessionKeeper holding a copy of the mount's /dev/fuse descriptor (as its fd 3). */
  keeper: number
}

const STATE = z.object({
  version: z.literal(1),
  mounts: z.array(
    z.object({
      mountpoint: z.string().startsWith('/'),
      source: z.string().min(1),
      config: z.record(z.string(), z.unknown()),
      keeper: z.number().int().positive()
    })
  )
})

/**
 * A shared daemon's `--supervisor` file: its mounts, rewritten on every
 * change, so that a daemon started after it died takes their sessions over
 * (nydus keeps this state in its supervisor process, over a socket). It holds
 * the mounts' configs, registry credentials included: mode 0600.
 */
export class SupervisorState {
  constructor(readonly path: string) {}

  /** The mounts a dead predecessor left; none if there is no file. Untrusted: a bad file is a one-line ERR_CONFIG. */
  read(): HeldMount[] {
    let text: string
    try {
      text = readFileSync(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new NydusdError('ERR_CONFIG', `supervisor state ${this.path}: ${(err as Error).message}`)
    }
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (err) {
      throw new NydusdError('ERR_CONFIG', `supervisor state ${this.path}: invalid JSON (${(err as Error).message})`)
    }
    const r = STATE.safeParse(value)
    if (!r.success) {
      const issue = r.error.issues[0]!
      throw new NydusdError('ERR_CONFIG', `supervisor state ${this.path}: ${issue.path.join('.') || '(top)'}: ${issue.message}`)
    }
    return r.data.mounts
  }

  /** Written whole, then renamed over the old one: a crash never leaves half a file. */
  write(mounts: HeldMount[]): void {
    const tmp = `${this.path}.tmp`
    writeFileSync(tmp, JSON.stringify({ version: 1, mounts }), { mode: 0o600 })
    renameSync(tmp, this.path)
  }
}
