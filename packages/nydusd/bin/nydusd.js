#!/usr/bin/env node
import { main } from '../dist/src/cli.js'

// Exit explicitly: fuse-native keeps a libuv handle referenced after a session
// the kernel ended, which would keep the process alive.
process.exit(await main(process.argv.slice(2)))
