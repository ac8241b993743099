import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { mountImage, mustRun, pushBlob, spawnOwned, startFaultProxy, startRegistry, tempDir } from '@nydusjs/testkit'
import { buildImage } from './helpers.js'

const MiB = 1024 * 1024
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Reads the file whole, with a SIGUSR1 handler: Python retries a read that a signal interrupted (PEP 475). */
const PY_READER = `
import hashlib, signal, sys
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
sys.stdout.write('ready\\n'); sys.stdout.flush()
with open(sys.argv[1], 'rb') as f:
    data = f.read()
print(hashlib.sha256(data).hexdigest(), len(got))
`

test.serial(
  'readers killed or signalled mid-read, while the registry stalls: the survivors and later readers get every byte right',
  async t => {
    const dir = await tempDir(t)
    const root = join(dir, 'root')
    await mkdir(root)
    const big = randomBytes(8 * MiB)
    await writeFile(join(root, 'big.bin'), big)
    await mustRun('tar', ['-cf', join(dir, 'l.tar'), '-C', root, '.'])
    const img = await buildImage(t, join(dir, 'l.tar'))
    const [blob] = await readdir(img.blobs)
    const reg = await startRegistry(t)
    await pushBlob(reg, 'nydusjs/intr', await readFile(join(img.blobs, blob)))
    const proxy = await startFaultProxy(t, reg.url)
    proxy.set('hold')
    const config = {
      device: {
        backend: {
          type: 'registry',
          // Longer than the registry is held: the reads wait, none fails.
          request_timeout: 20,
          config: { scheme: 'http', host: proxy.host, repo: 'nydusjs/intr' }
        },
        cache: { type: 'blobcache', config: { work_dir: img.cache } }
      }
    }
    const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config, args: ['--fuse-transport', 'direct'] })
    const file = join(m.mnt, 'big.bin')
    const killed = [0, 1].map(() => spawnOwned('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M'], { stdio: 'ignore' }))
    const signalled = [0, 1].map(() => {
      const p = spawnOwned('python3', ['-c', PY_READER, file], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      p.stdout!.on('data', (b: Buffer) => {
        out += b.toString()
      })
      const ended = new Promise<string>(resolve => p.once('exit', () => resolve(out)))
      return { p, ended, ready: async () => await until(() => out.startsWith('ready')) }
    })
    for (const s of signalled) await s.ready()
    // Every reader is now blocked in a READ that waits on the stalled registry.
    await sleep(800)
    for (const p of killed) p.kill('SIGKILL')
    for (const s of signalled) s.p.kill('SIGUSR1')
    await sleep(300)
    t.true(proxy.counts().hold >= 1, 'the reads were waiting on the registry')
    proxy.set('pass')
    for (const s of signalled) {
      const [digest, signals] = (await s.ended).split('\n')[1].split(' ')
      t.is(digest, sha(big), 'the signalled reader got every byte right')
      t.is(signals, '1')
    }
    t.is(sha(await readFile(file)), sha(big))
    t.is(m.proc.exitCode, null, 'the daemon lives on')
    const metrics = (await m.api('/api/v1/metrics', true)) as string
    t.false(
      /op="read",result="error"/.test(metrics),
      m
        .logs()
        .split('\n')
        .filter(l => l.includes('"level":50'))
        .slice(0, 3)
        .join('\n')
    )
  }
)

async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await sleep(25)
}
