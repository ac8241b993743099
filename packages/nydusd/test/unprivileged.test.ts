import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { chown, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isMounted, mountImage, mustRun, run, tempDir } from '@nydusjs/testkit'
import { buildImage, localConfig } from './helpers.js'

/** nobody: no capabilities, so the mount can only go through the setuid fusermount. */
const NOBODY = 65534

const asNobody = async (cmd: string): Promise<string> =>
  (await mustRun('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', 'sh', '-c', cmd])).trim()

test.serial('an unprivileged nydusd mounts over fuse-native through fusermount; its user reads every byte right', async t => {
  const src = await tempDir(t)
  await mkdir(join(src, 'root'))
  const big = randomBytes(3 * 1024 * 1024)
  await writeFile(join(src, 'root', 'small.txt'), 'unprivileged\n')
  await writeFile(join(src, 'root', 'big.bin'), big)
  await mustRun('tar', ['-cf', join(src, 'l.tar'), '-C', join(src, 'root'), '.'])
  const img = await buildImage(t, join(src, 'l.tar'))
  // The image and the daemon's socket, config and cache: reachable and writable by nobody.
  await mustRun('chmod', ['-R', 'a+rwX', img.dir])
  await chown(img.mnt, NOBODY, NOBODY)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt, uid: NOBODY })
  t.like(await m.api('/api/v1/daemon'), { state: 'RUNNING', transport: 'fuse-native' })
  t.regex(m.logs(), /only this user can read the mount/)
  t.is(await asNobody(`cat '${join(img.mnt, 'small.txt')}'`), 'unprivileged')
  const want = createHash('sha256').update(big).digest('hex')
  t.is((await asNobody(`sha256sum '${join(img.mnt, 'big.bin')}'`)).split(' ')[0], want)
  // Without allow_other the mount is its user's alone: not even root reads it.
  t.not((await run('cat', [join(img.mnt, 'small.txt')])).code, 0)
  t.is(await m.stop(), 0)
  t.false(await isMounted(img.mnt), 'unmounted by the daemon itself (fusermount -u)')
})
