import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { Agent, interceptors } from 'undici'
import { PeerNode } from '../peer/peer-node.js'
import { SupernodeRefusal, SupernodesDown } from '../peer/supernode-client.js'
import { Code } from '../protocol/codes.js'
import { digestOfTask, taskIdOf } from '../protocol/task-id.js'
import { headerRecord } from '../supernode/origin.js'
import { fail, logger, rate } from './common.js'

const USAGE = `dfget: downloads a file through the swarm (Dragonfly v1's dfget)

Usage: dfget --url URL -o FILE [--node HOST:PORT,...] [--header 'K: V']... [--filter a&b]
             [--identifier ID] [--digest sha256:HEX] [--notbs] [--totallimit RATE] [--home DIR]

  --url URL          what to download (http or https)
  -o, --output FILE  where to put it (written whole or not at all)
  --node LIST        supernodes, tried in order
  --header 'K: V'    sent to the origin (through the supernode), never to peers
  --filter a&b       query parameters that do not make a URL another file
  --identifier ID    a task apart from others of the same URL
  --digest sha256:H  the file must have this digest (OCI blob URLs are checked anyway)
  --notbs            never download from the source itself when the swarm fails
  --totallimit RATE  upload bandwidth to peers while it runs, e.g. 20M
  --home DIR         pieces while it runs (default ~/.small-dragonfly)`

interface Args {
  url: string
  output: string
  nodes: string[]
  headers: string[]
  filter: string[]
  identifier?: string
  digest?: string
  notbs: boolean
  totalLimit?: number
  home: string
  logLevel: string
}

export async function main(argv: string[]): Promise<number> {
  let a: Args | 'help'
  try {
    a = args(argv)
  } catch (err) {
    return fail('dfget', `${(err as Error).message} (see --help)`, 2)
  }
  if (a === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const tmp = `${a.output}.dfget-${process.pid}.tmp`
  try {
    const viaP2p = a.nodes.length > 0 ? await p2p(a, tmp) : 'no-supernode'
    if (viaP2p !== true) {
      if (a.notbs)
        throw new Error(`${viaP2p === 'no-supernode' ? 'no supernode given' : 'no supernode answered'}, and --notbs forbids the source`)
      process.stderr.write(
        `dfget: ${viaP2p === 'no-supernode' ? 'no supernode given' : 'no supernode answered'}; downloading from the source\n`
      )
      await fromSource(a, tmp)
    }
    await rename(tmp, a.output)
    return 0
  } catch (err) {
    await rm(tmp, { force: true })
    return fail('dfget', err)
  }
}

/** Through the swarm into `tmp`, checked; 'down' when no supernode answered. */
async function p2p(a: Args, tmp: string): Promise<true | 'down'> {
  const log = logger(a.logLevel, 'dfget')
  let node: PeerNode | undefined
  try {
    node = await PeerNode.start({ nodes: a.nodes, home: a.home, port: 0, totalLimit: a.totalLimit, log, maxUploads: 5 })
    const task = await node.task({ url: a.url, headers: a.headers, filter: a.filter, identifier: a.identifier, digest: a.digest })
    const bar = progress(task.stored.length)
    await task.all(bar)
    bar(task.stored.length, true)
    await pipeline(createReadStream(task.stored.file, { end: Math.max(0, task.stored.length - 1) }), createWriteStream(tmp))
    await check(tmp, a)
    return true
  } catch (err) {
    if (err instanceof SupernodesDown) return 'down'
    if (err instanceof SupernodeRefusal && err.code === Code.NeedAuth)
      throw new Error(`the origin refused the credentials given (${err.status})`)
    throw err
  } finally {
    await node?.close().catch(() => {})
  }
}

async function fromSource(a: Args, tmp: string): Promise<void> {
  const agent = new Agent({ connect: { timeout: 10_000 } }).compose(interceptors.redirect({ maxRedirections: 5 }))
  try {
    const u = new URL(a.url)
    const res = await agent.request({ origin: u.origin, path: u.pathname + u.search, method: 'GET', headers: headerRecord(a.headers) })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`the source answered ${res.statusCode}`)
    }
    await pipeline(res.body, createWriteStream(tmp))
    await check(tmp, a)
  } finally {
    await agent.close()
  }
}

/** The finished file against --digest, or an OCI blob URL's digest. */
async function check(file: string, a: Args): Promise<void> {
  const want = a.digest ?? digestOfTask(taskIdOf(a.url, { filter: a.filter, identifier: a.identifier }))
  if (want === undefined) return
  const h = createHash('sha256')
  await pipeline(createReadStream(file), h)
  const got = `sha256:${h.digest('hex')}`
  if (got !== want) throw new Error(`the download hashes to ${got}, not ${want}`)
}

/** A progress bar on a terminal; nothing otherwise. */
function progress(total: number): (bytes: number, done?: boolean) => void {
  if (process.stderr.isTTY !== true) return () => {}
  const t0 = Date.now()
  let last = 0
  return (bytes, done = false) => {
    const now = Date.now()
    if (!done && now - last < 100) return
    last = now
    const frac = total === 0 ? 1 : bytes / total
    const width = 30
    const fill = Math.round(frac * width)
    const mibs = bytes / 1048576 / Math.max(0.001, (now - t0) / 1000)
    process.stderr.write(
      `\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mibs.toFixed(1)} MiB/s${done ? '\n' : ''}`
    )
  }
}

function args(argv: string[]): Args | 'help' {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string', short: 'u' },
      output: { type: 'string', short: 'o' },
      node: { type: 'string', short: 'n' },
      header: { type: 'string', multiple: true },
      filter: { type: 'string', short: 'f' },
      identifier: { type: 'string', short: 'i' },
      digest: { type: 'string' },
      notbs: { type: 'boolean' },
      totallimit: { type: 'string' },
      home: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  })
  if (v.help === true) return 'help'
  if (v.url === undefined) throw new Error('--url is required')
  if (v.output === undefined) throw new Error('-o/--output is required')
  let u: URL
  try {
    u = new URL(v.url)
  } catch {
    throw new Error(`--url ${JSON.stringify(v.url.slice(0, 200))}: not a URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--url: scheme ${u.protocol} (want http or https)`)
  if (v.digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(v.digest)) throw new Error('--digest: want sha256:<64 hex digits>')
  const headers = v.header ?? []
  for (const h of headers)
    if (Object.keys(headerRecord([h])).length === 0) throw new Error(`--header ${JSON.stringify(h.slice(0, 80))}: want 'Name: value'`)
  return {
    url: v.url,
    output: v.output,
    nodes: (v.node ?? '')
      .split(',')
      .map(s => s.trim())
      .filter(Boolean),
    headers,
    filter: (v.filter ?? '').split('&').filter(Boolean),
    identifier: v.identifier,
    digest: v.digest,
    notbs: v.notbs === true,
    totalLimit: rate('totallimit', v.totallimit),
    home: v.home ?? join(homedir(), '.small-dragonfly'),
    logLevel: v['log-level'] ?? 'warn'
  }
}
