#!/usr/bin/env node
// The test worker's reaper: reads `pid N`, `mount PATH`, `dir PATH`, `under PATH`, `netns NAME`, `link NAME` (and
// `un…` to drop one) on stdin; when stdin ends (the worker exited, timed out or was SIGKILLed) it
// kills what is left, detaches the mounts and removes the directories, then exits.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { createInterface } from 'node:readline'

const pids = new Set()
const mounts = new Set()
const dirs = new Set()
// Trees whose every process (by command line) and mount go too: a containerd with its shims.
const unders = new Set()
// cgroup names (containerd namespaces): every process in them, in any controller, is killed.
const cgroups = new Set()
// Network namespaces: their processes are killed and the namespace (with its veth pair) deleted.
const netnses = new Set()
// Host network links (a test's bridge), deleted after the namespaces.
const links = new Set()
const sets = { pid: pids, mount: mounts, dir: dirs, under: unders, cgroup: cgroups, netns: netnses, link: links }

createInterface({ input: process.stdin })
  .on('line', line => {
    const m = /^(un)?(pid|mount|dir|under|cgroup|netns|link) (.+)$/.exec(line)
    if (m === null) return
    if (m[1] === 'un') sets[m[2]].delete(m[3])
    else sets[m[2]].add(m[3])
  })
  .on('close', reap)
process.stdin.on('error', reap)
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => {})

let reaped = false
function reap() {
  if (reaped) return
  reaped = true
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL')
    } catch {}
  }
  for (const name of cgroups) killCgroup(name)
  for (const ns of netnses) {
    const inside = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 }).stdout ?? ''
    for (const pid of inside.split('\n').filter(Boolean))
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {}
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 })
  }
  for (const l of links) spawnSync('ip', ['link', 'del', l], { stdio: 'ignore', timeout: 5000 })
  for (const root of unders) {
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p) || Number(p) === process.pid) continue
      let cmd = ''
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8')
      } catch {}
      if (cmd.includes(root))
        try {
          process.kill(Number(p), 'SIGKILL')
        } catch {}
    }
    const inside = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map(l => l.split(' ')[1])
      .filter(m => m !== undefined && (m === root || m.startsWith(root + '/')))
    for (const m of inside.reverse()) spawnSync('umount', ['-l', '--', m], { stdio: 'ignore', timeout: 5000 })
  }
  for (const mnt of mounts) {
    spawnSync('fusermount', ['-uz', '--', mnt], { stdio: 'ignore', timeout: 5000 })
    spawnSync('umount', ['-l', '--', mnt], { stdio: 'ignore', timeout: 5000 })
  }
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
  process.exit(0)
}

/** Kills every process in cgroup NAME (and below) of every v1 controller and the v2 tree. */
function killCgroup(name) {
  const bases = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']
  try {
    for (const c of readdirSync('/sys/fs/cgroup')) bases.push(`/sys/fs/cgroup/${c}`)
  } catch {}
  const walk = dir => {
    let entries = []
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) if (e.isDirectory()) walk(`${dir}/${e.name}`)
    try {
      for (const pid of readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean))
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {}
    } catch {}
  }
  for (const b of new Set(bases)) walk(`${b}/${name}`)
}
