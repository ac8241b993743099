#!/usr/bin/env node
'use strict'
import('../dist/src/cli/dfdaemon.js').then(async ({ main }) => {
  process.exit(await main(process.argv.slice(2)))
})
