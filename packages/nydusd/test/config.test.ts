import test from 'ava'
import { parseConfig } from '../src/config.js'

const localfs = { type: 'localfs', config: { dir: '/blobs' } }

/** The message of the ERR_CONFIG that `config` gets; anything else fails the test. */
function refusal(config: unknown): string {
  try {
    parseConfig(config, 'c.json')
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_CONFIG') return (err as Error).message
    throw err
  }
  throw new Error(`accepted: ${JSON.stringify(config)}`)
}

test('defaults fill the sections a config leaves out, nested ones included', t => {
  const c = parseConfig({ device: { backend: localfs }, fs_prefetch: { enable: true } }, 'c.json')
  t.is(c.memory.cache_size, 16 * 1024 * 1024)
  t.is(c.memory.idle_release_secs, 10)
  t.deepEqual(c.fs_prefetch, { enable: true, threads_count: 4, merging_size: 128 * 1024, bandwidth_rate: 0 })
  t.is(c.device.backend.type, 'localfs')
  t.is((c.device.backend as { retry_limit: number }).retry_limit, 2)
})

test('a bad config gets one line naming the file and the field', t => {
  const cases: [unknown, RegExp][] = [
    [{ device: { backend: { ...localfs, config: { dir: '/b', dri: 1 } } } }, /device\.backend\.config: .*'dri'/],
    [{ device: { backend: { type: 'http', config: { url: 'not a url' } } } }, /device\.backend\.config\.url: must be an http or https URL/],
    [{ device: { backend: { type: 'http', config: { url: 'ftp://h/x' } } } }, /device\.backend\.config\.url: must be an http or https URL/],
    [{ device: { backend: { type: 'nfs' } } }, /device\.backend\.type: /],
    [{ device: { backend: localfs }, memory: { cache_size: -1 } }, /memory\.cache_size: /],
    [{ device: { backend: localfs }, mode: 'cached' }, /mode: /],
    [[], /\(root\): /]
  ]
  for (const [config, pattern] of cases) {
    const msg = refusal(config)
    t.regex(msg, /^config c\.json: /)
    t.regex(msg, pattern)
    t.false(msg.includes('\n'), msg)
  }
})

test('a chain takes every single backend, dragonfly included, and only those', t => {
  const chain = (backends: unknown[]) => ({ device: { backend: { type: 'chain', config: { backends } } } })
  const c = parseConfig(chain([localfs, { type: 'dragonfly', config: { proxy: 'http://127.0.0.1:65001' } }]), 'c.json')
  t.is(c.device.backend.type, 'chain')
  t.regex(refusal(chain([])), /device\.backend\.config\.backends: /)
  t.regex(refusal(chain([{ type: 'chain', config: { backends: [localfs] } }])), /device\.backend\.config\.backends\.0\.type: /)
})
