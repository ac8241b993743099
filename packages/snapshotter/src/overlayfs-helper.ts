import { spawnSync } from 'node:child_process'

/** Options only Kata's agent or FUSE understand: overlayfs would refuse them. */
const DROPPED = /^(extraoption=|fd=|rootmode=|user_id=|group_id=|default_permissions$|allow_other$|fsname=|subtype=)/

/**
 * The `nydus-overlayfs` mount helper (containerd runs it through mount.fuse
 * for a mount of type fuse.nydus-overlayfs): `SOURCE TARGET -o OPTIONS`.
 * It drops what Kata's agent needs (`extraoption=`) and mounts the overlay.
 */
export function mainOverlayfs(argv: string[]): number {
  const pos: string[] = []
  const opts: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-o') {
      if (argv[i + 1] === undefined) return fail('-o needs a value')
      opts.push(...argv[++i].split(','))
    } else if (argv[i].startsWith('-o')) opts.push(...argv[i].slice(2).split(','))
    else if (argv[i] === '-h' || argv[i] === '--help') {
      process.stdout.write('Usage: nydus-overlayfs SOURCE TARGET -o lowerdir=..,upperdir=..,workdir=..[,extraoption=..]\n')
      return 0
    } else pos.push(argv[i])
  }
  if (pos.length !== 2) return fail(`want SOURCE and TARGET, got ${pos.length} argument(s)`)
  const kept = opts.filter(o => o !== '' && !DROPPED.test(o))
  if (!kept.some(o => o.startsWith('lowerdir='))) return fail(`mount of ${pos[1]}: no lowerdir= among the options`)
  const r = spawnSync('mount', ['-t', 'overlay', pos[0], pos[1], '-o', kept.join(',')], { encoding: 'utf8', timeout: 30_000 })
  if (r.status === 0) return 0
  return fail(`mount of ${pos[1]}: ${(r.stderr || r.error?.message || `mount exited ${r.status}`).trim().split('\n')[0]}`)
}

function fail(msg: string): number {
  process.stderr.write(`nydus-overlayfs: error: ${msg}\n`)
  return 1
}
