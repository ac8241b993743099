import test from 'ava'
import { parseConfig } from '../../src/config.js'
import { ProxyRules } from '../../src/rules.js'

const DIGEST = `sha256:${'c'.repeat(64)}`

test("Dragonfly v1's dfdaemon.yml keys are read as v1 reads them; defaults are v1's", t => {
  const c = parseConfig(`
registry_mirror:
  remote: https://index.docker.io
  insecure: true
  certs: [/etc/ca.pem]
proxies:
  - regx: blobs/sha256.*
  - regx: some-registry/
    use_https: true
  - regx: other
    direct: true
hijack_https:
  cert: df.crt
  key: df.key
  hosts:
    - regx: mirror.aliyuncs.com:443
      insecure: true
dfget_flags: ["--verbose"]
`)
  t.is(c.registry_mirror.remote, 'https://index.docker.io')
  t.true(c.registry_mirror.insecure)
  t.deepEqual(c.registry_mirror.certs, ['/etc/ca.pem'])
  t.is(c.proxies.length, 3)
  t.false(c.proxies[0].direct)
  t.is(c.hijack_https?.hosts[0].regx, 'mirror.aliyuncs.com:443')
  const empty = parseConfig('')
  t.deepEqual(
    empty.proxies.map(p => p.regx),
    ['blobs/sha256.*']
  )
  t.false(empty.registry_mirror.direct)
})

test('a bad config gets one line naming the file and the field', t => {
  const cases: Array<[string, RegExp]> = [
    ['registry_mirror:\n  remote: ftp://x\n', /^c.yml: registry_mirror\.remote: /],
    ['registry_mirror:\n  insecur: true\n', /^c.yml: registry_mirror: .*insecur/],
    ['proxies:\n  - regx: "("\n', /^c.yml: proxies regx "\(": not a regular expression$/],
    ['proxies:\n  - direct: true\n', /^c.yml: proxies\.0\.regx: /],
    ['hijack_https:\n  cert: a\n', /^c.yml: hijack_https\.key: /],
    ['proxies: [\n', /^c.yml: not YAML: /],
    ['- a\n- b\n', /^c.yml: want a mapping at the top level$/]
  ]
  for (const [yaml, want] of cases) {
    const err = t.throws(() => parseConfig(yaml, 'c.yml'))
    t.regex(err.message, want, yaml)
    t.false(err.message.includes('\n'), 'one line')
  }
})

test('proxy rules: the first match decides; only blob GETs go through P2P', t => {
  const rules = new ProxyRules(
    parseConfig(`
proxies:
  - regx: private-reg
    direct: true
  - regx: blobs/sha256.*
  - regx: plain-reg
    use_https: true
    redirect: mirror.test:5000
`)
  )
  const blob = (host: string): URL => new URL(`http://${host}/v2/lib/a/blobs/${DIGEST}`)
  t.is(rules.route(blob('r.test'), 'GET').kind, 'p2p')
  t.is(rules.route(blob('r.test'), 'HEAD').kind, 'p2p')
  t.is(rules.route(blob('r.test'), 'DELETE').kind, 'direct')
  t.is(rules.route(blob('private-reg'), 'GET').kind, 'direct', 'an earlier direct rule wins')
  t.is(rules.route(new URL('http://r.test/v2/lib/a/manifests/latest'), 'GET').kind, 'direct', 'no rule matches')
  const r = rules.route(new URL('http://plain-reg/v2/lib/a/manifests/1'), 'GET')
  t.is(r.kind, 'direct', 'a manifest never goes through P2P')
  t.is(r.url.href, 'https://mirror.test:5000/v2/lib/a/manifests/1')
})
