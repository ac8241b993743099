import test from 'ava'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { forceUnmount, isMounted, layerFixture, repoRoot, spawnOwned } from '@nydusjs/testkit'
import { buildImage, localConfig } from './helpers.js'

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test.serial('a test worker killed mid-test (SIGKILL) leaves no daemon, server, mount or temporary directory behind', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  t.teardown(async () => {
    await forceUnmount(img.mnt)
  })
  // A stand-in for an ava worker: it starts what tests start through the test kit, then is killed.
  const worker = join(img.dir, 'worker.mjs')
  const kit = pathToFileURL(join(repoRoot, 'packages/testkit/dist/src/index.js')).href
  await writeFile(
    worker,
    `import { mountImage, reaper, startRegistry } from ${JSON.stringify(kit)}
const t = { teardown: () => {} }
const reg = await startRegistry(t)
const m = await mountImage(t, { dir: ${JSON.stringify(img.dir)}, bootstrap: ${JSON.stringify(img.boot)}, mnt: ${JSON.stringify(img.mnt)}, config: ${JSON.stringify(localConfig(img))} })
process.stdout.write(JSON.stringify({ nydusd: m.proc.pid, registry: reg.pid, registryDir: reg.dir, sidecar: reaper.sidecarPid }) + '\\n')
setInterval(() => {}, 1000)
`
  )
  const child = spawnOwned(process.execPath, [worker], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString()
  })
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      if (out.includes('\n')) resolve(out.trim())
    })
    child.once('exit', code => reject(new Error(`worker exited ${code}: ${err}`)))
  })
  const started = JSON.parse(line) as { nydusd: number; registry: number; registryDir: string; sidecar: number }
  t.true(alive(started.nydusd) && alive(started.registry) && alive(started.sidecar))
  t.true(await isMounted(img.mnt))
  t.true(existsSync(started.registryDir))
  child.kill('SIGKILL')
  const clean = async (): Promise<boolean> =>
    !alive(started.nydusd) &&
    !alive(started.registry) &&
    !(await isMounted(img.mnt)) &&
    !existsSync(started.registryDir) &&
    !alive(started.sidecar)
  for (let i = 0; i < 100 && !(await clean()); i++) await sleep(50)
  t.false(alive(started.nydusd), 'nydusd is gone')
  t.false(alive(started.registry), 'docker-registry is gone')
  t.false(await isMounted(img.mnt), 'the mount is gone')
  t.false(existsSync(started.registryDir), "the registry's temporary directory is gone")
  t.false(alive(started.sidecar), 'the reaper itself exits')
})
