import { parseArgs } from 'node:util'
import { BlobFace } from '../peer/blob-face.js'
import { PeerNode } from '../peer/peer-node.js'
import { DFDAEMON_PORT } from '../protocol/codes.js'
import { fail, logger, num, rate, untilSignal } from './common.js'

const USAGE = `dfdaemon: the node daemon of the swarm (Dragonfly v1's dfdaemon)

Usage: dfdaemon --node HOST:PORT[,HOST:PORT...] [--port ${DFDAEMON_PORT}] [--home DIR] [--registry URL]
                [--ip IP] [--totallimit RATE] [--max-disk SIZE] [--log-level info]

  --node LIST        supernodes, tried in order (a dead one is left for the next)
  --port N           pieces to peers (GET /peer/file/{task}) and blobs to local
                     clients (GET /v2/<repo>/blobs/<digest>) (default ${DFDAEMON_PORT})
  --listen ADDR      address to bind (default 0.0.0.0)
  --home DIR         where pieces are kept (default /var/lib/dfdaemon)
  --registry URL     the upstream registry when a request names none
                     (X-Dragonfly-Registry header, containerd's ?ns=)
  --ip IP            the address peers reach this node at (default: the one
                     that reaches the supernode)
  --totallimit RATE  upload bandwidth for peers, e.g. 20M (bytes/s)
  --max-disk SIZE    disk for pieces, e.g. 10G; least recently used go first
  --heartbeat S      seconds between heartbeats (default 5)`

export async function main(argv: string[]): Promise<number> {
  let v: Record<string, string | boolean | undefined>
  try {
    v = parseArgs({
      args: argv,
      options: {
        node: { type: 'string' },
        port: { type: 'string' },
        listen: { type: 'string' },
        home: { type: 'string' },
        registry: { type: 'string' },
        ip: { type: 'string' },
        totallimit: { type: 'string' },
        'max-disk': { type: 'string' },
        heartbeat: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      },
      strict: true
    }).values
  } catch (err) {
    return fail('dfdaemon', `${(err as Error).message} (see --help)`, 2)
  }
  if (v.help === true) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  try {
    const nodes = String(v.node ?? '')
      .split(',')
      .map(s => s.trim())
      .filter(Boolean)
    if (nodes.length === 0) return fail('dfdaemon', '--node: give at least one supernode (host:port)', 2)
    const log = logger(v['log-level'] as string | undefined, 'dfdaemon')
    let face: BlobFace | undefined
    const node = await PeerNode.start({
      nodes,
      home: (v.home as string | undefined) ?? '/var/lib/dfdaemon',
      maxBytes: rate('max-disk', v['max-disk'] as string | undefined),
      port: num('port', v.port as string | undefined, DFDAEMON_PORT),
      listen: v.listen as string | undefined,
      ip: v.ip as string | undefined,
      totalLimit: rate('totallimit', v.totallimit as string | undefined),
      heartbeatMs: num('heartbeat', v.heartbeat as string | undefined, 5, 0.05) * 1000,
      log,
      extra: async (req, res) => (await face?.handle(req, res)) ?? false
    })
    face = new BlobFace(node, v.registry as string | undefined)
    log.info({ port: node.port, ip: node.ip, nodes }, 'dfdaemon listening')
    const why = await untilSignal()
    log.info({ why }, 'stopping')
    await node.close()
    return 0
  } catch (err) {
    return fail('dfdaemon', err)
  }
}
