#!/usr/bin/env -S node --max-semi-space-size=1
'use strict'
// --max-semi-space-size=1 (in the line above; spawners pass it too): V8's young generation
// otherwise grows to 32 MiB during start-up and stays resident in an idle daemon.
// CommonJS on purpose: an ES module entry is itself read through libuv's pool,
// which then starts with its default 4 threads before any of our code runs.
// File reads run on that pool, and a read from a hung NAS holds a thread for
// as long as it hangs, so nydusd starts a larger pool (each localfs link is
// capped below it) that leaves room for the cache and the other links.
process.env.UV_THREADPOOL_SIZE ??= '16'
import('../dist/src/cli.js').then(async ({ main }) => {
  // Exit explicitly: fuse-native keeps a libuv handle referenced after a session
  // the kernel ended, which would keep the process alive.
  process.exit(await main(process.argv.slice(2)))
})
