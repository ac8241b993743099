import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { reaper } from './reaper.js'

/** packages/testkit/dist/src -> repo root */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')
export const fixturesDir = join(repoRoot, 'fixtures')
export const fixtureCache = join(fixturesDir, '.cache')
export const nydusImageBin = join(repoRoot, 'packages/converter/bin/run.js')

export const fixture = (...parts: string[]): string => join(fixturesDir, ...parts)

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

/** A fresh temporary directory, removed when the test ends (pass or fail). */
export async function tempDir(t: Teardown, prefix = 'nydusjs-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  reaper.dir(dir)
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true })
    reaper.undir(dir)
  })
  return dir
}
