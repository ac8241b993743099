import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import { dfdaemonBin, run, tempDir } from '@nydusjs/testkit'

test('dfdaemon with a bad --config, --registry or hijacking CA exits 2 with one line naming the file and the field', async t => {
  const dir = await tempDir(t)
  const file = async (name: string, text: string): Promise<string> => {
    await writeFile(join(dir, name), text)
    return join(dir, name)
  }
  const cases: Array<[string[], RegExp]> = [
    [['--config', join(dir, 'none.yml')], /^dfdaemon: error: --config \S+none\.yml: ENOENT\n$/],
    [
      ['--config', await file('a.yml', 'proxies:\n  - regx: "["\n')],
      /^dfdaemon: error: \S+a\.yml: proxies regx "\[": not a regular expression\n$/
    ],
    [['--config', await file('b.yml', 'registry_mirror:\n  remote: 12\n')], /^dfdaemon: error: \S+b\.yml: registry_mirror\.remote: .+\n$/],
    [
      ['--config', await file('c.yml', `hijack_https:\n  cert: ${join(dir, 'a.yml')}\n  key: ${join(dir, 'a.yml')}\n`)],
      /^dfdaemon: error: hijack_https\.cert: \S+a\.yml: not a PEM certificate\n$/
    ],
    [
      ['--config', await file('d.yml', 'registry_mirror:\n  certs: [/nonexistent/ca.pem]\n')],
      /^dfdaemon: error: certs: \/nonexistent\/ca\.pem: ENOENT\n$/
    ],
    [['--registry', 'ftp://x'], /^dfdaemon: error: --registry "ftp:\/\/x": want http\(s\):\/\/host\[:port\]\n$/]
  ]
  for (const [args, want] of cases) {
    const r = await run(process.execPath, [dfdaemonBin, '--node', '127.0.0.1:1', '--home', dir, ...args], { timeoutMs: 20_000 })
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, want)
  }
})
