import test from 'ava'
import { setImmediate as tick } from 'node:timers/promises'
import { returnMemory, tuneMalloc } from '../src/memory-release.js'

test('glibc takes both malloc settings (mallopt answers 0 to a parameter it does not know)', t => {
  t.true(tuneMalloc())
})

test('an idle release collects: a dropped buffer is gone after it', async t => {
  const dropped = new WeakRef(new ArrayBuffer(16 * 1024 * 1024))
  // A WeakRef keeps its target until the current job ends.
  await tick()
  returnMemory()
  t.is(dropped.deref(), undefined)
})
