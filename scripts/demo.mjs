#!/usr/bin/env node
// npm run demo: builds the busybox-static OCI image from Debian's package,
// converts it with nydus-image, verifies every chunk, and shows what it made.
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, '.bench', 'demo')
const cli = join(root, 'packages/converter/bin/run.js')
const step = (title, cmd, args) => {
  console.log(`\n$ ${title}`)
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root })
}
rmSync(out, { recursive: true, force: true })
step('bash fixtures/scripts/build-busybox.sh', 'bash', ['fixtures/scripts/build-busybox.sh'])
step('nydus-image convert --oci-dir fixtures/.cache/busybox/oci:latest --output .bench/demo', process.execPath, [cli, 'convert', '--oci-dir', 'fixtures/.cache/busybox/oci:latest', '--output', out])
step('nydus-image check --bootstrap .bench/demo/image.boot --blob-dir .bench/demo/blobs', process.execPath, [cli, 'check', '--bootstrap', join(out, 'image.boot'), '--blob-dir', join(out, 'blobs')])
step('nydus-image inspect --bootstrap .bench/demo/image.boot /bin/busybox', process.execPath, [cli, 'inspect', '--bootstrap', join(out, 'image.boot'), '/bin/busybox'])
step('nydus-image stat --bootstrap .bench/demo/image.boot', process.execPath, [cli, 'stat', '--bootstrap', join(out, 'image.boot')])
