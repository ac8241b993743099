#!/usr/bin/env node
// The test worker's reaper: reads `pid N`, `mount PATH`, `dir PATH` (and `un…` to drop
// one) on stdin; when stdin ends (the worker exited, timed out or was SIGKILLed) it
// kills what is left, detaches the mounts and removes the directories, then exits.
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createInterface } from 'node:readline'

const pids = new Set()
const mounts = new Set()
const dirs = new Set()
const sets = { pid: pids, mount: mounts, dir: dirs }

createInterface({ input: process.stdin })
  .on('line', line => {
    const m = /^(un)?(pid|mount|dir) (.+)$/.exec(line)
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
