import v8 from 'node:v8'
import { readFileSync } from 'node:fs'
const { Nydusd, parseConfig } = await import('./dist/src/index.js')
const { pino } = await import('pino')
const mb = n => (n / 1048576).toFixed(1)
const show = tag => {
  const m = process.memoryUsage()
  const sm = readFileSync('/proc/self/smaps_rollup', 'utf8')
  const anon = /Anonymous:\s+(\d+)/.exec(sm)[1] / 1024
  console.log(
    tag,
    `rss ${mb(m.rss)} anon ${anon.toFixed(1)} heapTotal ${mb(m.heapTotal)} used ${mb(m.heapUsed)} ext ${mb(m.external)} ab ${mb(m.arrayBuffers)}`
  )
}
show('loaded')
const config = parseConfig(JSON.parse(readFileSync('/tmp/mem/bb/cfg.json', 'utf8')), 'x')
const d = await Nydusd.start({
  image: { config, bootstrap: '/tmp/mem/bb/boot', mountpoint: '/tmp/mem/bb/mnt' },
  apisock: '/tmp/mem/p.sock',
  log: pino({ level: 'warn' })
})
show('mounted')
await new Promise(r => setTimeout(r, 3000))
show('idle 3s')
global.gc?.()
show('after gc')
for (const s of v8.getHeapSpaceStatistics()) console.log('  ', s.space_name, mb(s.space_size), mb(s.space_used_size))
await d.stop()
process.exit(0)
