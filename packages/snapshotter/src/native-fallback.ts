import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { unpackToTar } from '@nydusjs/converter'
import { loadDigester, openValidated, readTree } from '@nydusjs/rafs'
import { RegistryBackend } from '@nydusjs/storage'
import type { Logger } from 'pino'
import { SnapshotterError } from './errors.js'

export interface NativeCopyOptions {
  /** The bootstrap as containerd unpacked it. */
  bootstrap: string
  /** The bootstrap snapshot's directory: the copy goes to `native/` in it. */
  dir: string
  /** The registry backend config nydusd would have used (scheme, host, repo, credentials). */
  backend: Record<string, any>
  log: Logger
}

/**
 * A converted image without nydusd: every chunk fetched from the registry,
 * verified against the bootstrap, written out as a tar and extracted with
 * GNU tar (owners, modes, xattrs, devices, hard links). Used when the lazy
 * mount fails for a reason that is not the image's own (no FUSE, a daemon
 * that will not start): the container starts, as slowly as a full pull.
 * Returns the directory; one already made is reused.
 */
export async function nativeCopy(o: NativeCopyOptions): Promise<string> {
  const out = join(o.dir, 'native')
  if (existsSync(out)) return out
  const started = Date.now()
  const reader = await openValidated(await readFile(o.bootstrap))
  const b = o.backend
  const backend = new RegistryBackend({
    host: b.host,
    repo: b.repo,
    scheme: b.scheme,
    skipVerify: b.skip_verify,
    auth: b.auth,
    registryToken: b.registry_token,
    name: 'registry (native copy)'
  })
  const tar = join(o.dir, 'native.tar')
  const tmp = join(o.dir, 'native.tmp')
  try {
    const res = await unpackToTar(readTree(reader), backend, await loadDigester(reader.sb.digester), tar)
    await rm(tmp, { recursive: true, force: true })
    await mkdir(tmp, { mode: 0o755 })
    const x = spawnSync('tar', ['-x', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-p', '-f', tar, '-C', tmp], {
      encoding: 'utf8',
      maxBuffer: 1 << 20
    })
    if (x.status !== 0) throw new SnapshotterError('ERR_INTERNAL', `extracting the native copy: ${(x.stderr ?? '').trim().split('\n')[0]}`)
    await rename(tmp, out)
    o.log.warn({ bytes: res.bytes, entries: res.entries, seconds: (Date.now() - started) / 1000 }, 'image copied natively (no lazy mount)')
    return out
  } finally {
    await backend.close()
    await rm(tar, { force: true })
    await rm(tmp, { recursive: true, force: true })
  }
}
