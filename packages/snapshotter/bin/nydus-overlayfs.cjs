#!/usr/bin/env node
'use strict'
import('../dist/src/overlayfs-helper.js').then(({ mainOverlayfs }) => {
  process.exit(mainOverlayfs(process.argv.slice(2)))
})
