import { randomBytes } from 'node:crypto'
import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fixture, fixtureCache, fixturesDir } from './paths.js'
import { mustRun } from './run.js'

const exists = async (p: string): Promise<boolean> =>
  await access(p).then(
    () => true,
    () => false
  )

/** The committed edge-case layers, by name (fixtures/layers/NAME). */
export const layerFixture = (name: string): string => fixture('layers', name)

const made = new Map<string, Promise<string>>()

/** A compressed copy of a committed layer, made once with the real gzip or zstd tool. */
export async function compressedFixture(name: string, kind: 'gz' | 'zst'): Promise<string> {
  const key = `${name}.${kind}`
  let p = made.get(key)
  if (p === undefined) {
    p = makeCompressed(name, kind)
    made.set(key, p)
  }
  return await p
}

async function makeCompressed(name: string, kind: 'gz' | 'zst'): Promise<string> {
  await mkdir(fixtureCache, { recursive: true })
  const out = join(fixtureCache, `${name}.${kind}`)
  if (!(await exists(out))) {
    // Several test processes may race here: each writes its own file, the rename is atomic.
    const tmp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    if (kind === 'gz') await mustRun('sh', ['-c', `gzip -6nc '${layerFixture(name)}' > '${tmp}'`])
    else await mustRun('zstd', ['-q', '-3', '-f', layerFixture(name), '-o', tmp])
    await mustRun('mv', [tmp, out])
  }
  return out
}

/**
 * The busybox-static image (a layer tar and an OCI layout) from Debian's
 * package, built by fixtures/scripts/build-busybox.sh into fixtures/.cache.
 */
export async function busyboxFixture(): Promise<{ tar: string; oci: string }> {
  const tar = join(fixtureCache, 'busybox', 'rootfs.tar')
  const oci = join(fixtureCache, 'busybox', 'oci')
  if (!(await exists(join(oci, 'index.json')))) await mustRun('bash', [join(fixturesDir, 'scripts', 'build-busybox.sh')])
  return { tar, oci }
}

/**
 * The Debian/python3 image (debootstrap minbase + python3, one layer) as an
 * OCI layout, built by fixtures/scripts/build-debian.sh into fixtures/.cache
 * (about a minute on a fresh clone: it needs Debian's package mirror).
 */
export async function debianFixture(): Promise<{ tar: string; oci: string }> {
  const dir = join(fixtureCache, 'debian-python3')
  const tar = join(dir, 'rootfs.tar')
  const oci = join(dir, 'oci')
  if (!(await exists(join(oci, 'index.json')))) {
    // Test workers may ask at the same time: one makes the layout under a lock, the others find it made
    // (replacing a layout another worker already reads would pull its blobs from under it).
    await mkdir(fixtureCache, { recursive: true })
    const scripts = join(fixturesDir, 'scripts')
    const tmp = `${oci}.${process.pid}.tmp`
    const make = `[ -e '${oci}/index.json' ] && exit 0; bash '${scripts}/build-debian.sh' && rm -rf '${tmp}' && bash '${scripts}/make-oci-layout.sh' '${tmp}' latest '${tar}' && rm -rf '${oci}' && mv '${tmp}' '${oci}'`
    await mustRun('flock', [join(fixtureCache, 'debian-oci.lock'), 'bash', '-c', make])
  }
  return { tar, oci }
}
