import { readFileSync } from 'node:fs'
const rss = () => /VmRSS.*/.exec(readFileSync('/proc/self/status', 'utf8'))[0]
if (process.env.IMP) await import(process.env.IMP)
const { returnMemory } = await import('./dist/src/memory-release.js')
setTimeout(() => {
  console.log('before', rss())
  returnMemory()
  setTimeout(() => console.log('after', rss(), process.memoryUsage()), 500)
}, 2000)
