import { readdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import test from 'ava'
import { dfdaemonBin, dfgetBin, run, supernodeBin } from '@nydusjs/testkit'
import { blobOrigin, dfget } from './helpers.js'

test('bad flags get one line naming the flag and exit 2, for every CLI', async t => {
  const cases: Array<[string, string[], RegExp]> = [
    [supernodeBin, ['--bogus'], /^supernode: error: Unknown option '--bogus' \(see --help\)\n$/],
    [supernodeBin, ['--port', 'x'], /^supernode: error: --port "x": want a number >= 0\n$/],
    [supernodeBin, ['--ca-file', '/nonexistent/ca.pem'], /^supernode: error: --ca-file \/nonexistent\/ca\.pem: ENOENT\n$/],
    [dfdaemonBin, ['--port', '65001'], /^dfdaemon: error: --node: give at least one supernode \(host:port\)\n$/],
    [dfdaemonBin, ['--node', 'a:1', '--totallimit', 'fast'], /^dfdaemon: error: --totallimit "fast": want a rate like 20M/],
    [dfgetBin, ['-o', '/tmp/x'], /^dfget: error: --url is required \(see --help\)\n$/],
    [dfgetBin, ['--url', 'ftp://h/f', '-o', '/tmp/x'], /^dfget: error: --url: scheme ftp: \(want http or https\)/],
    [dfgetBin, ['--url', 'http://h/f', '-o', '/tmp/x', '--digest', 'md5:1'], /--digest: want sha256:<64 hex digits>/],
    [dfgetBin, ['--url', 'http://h/f', '-o', '/tmp/x', '--header', 'no colon'], /--header "no colon": want 'Name: value'/]
  ]
  for (const [bin, args, want] of cases) {
    const r = await run(process.execPath, [bin, ...args])
    t.not(r.code, 0, args.join(' '))
    t.regex(r.stderr, want, args.join(' '))
  }
})

test('dfget with a --digest the file does not have fails in one line and leaves no file', async t => {
  const o = await blobOrigin(t, 1024 * 1024)
  const r = await dfget(t, ['--url', o.url, '--digest', `sha256:${'0'.repeat(64)}`])
  t.not(r.code, 0)
  t.is(r.out, undefined)
  t.regex(
    r.stderr,
    /^dfget: no supernode given; downloading from the source\ndfget: error: the download hashes to sha256:[0-9a-f]{64}, not sha256:0{64}\n$/
  )
  t.deepEqual(
    (await readdir(dirname(r.file))).filter(n => n !== 'home'),
    [],
    'a partial or temporary file was left'
  )
})
