import { BlobFace } from '../peer/blob-face.js'
import { PeerNode } from '../peer/peer-node.js'
import { DFDAEMON_PORT } from '../protocol/codes.js'
import { daemonFlags, fail, logger, num, rate, untilSignal } from './common.js'

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
  const v = daemonFlags(
    'dfdaemon',
    argv,
    ['node', 'port', 'listen', 'home', 'registry', 'ip', 'totallimit', 'max-disk', 'heartbeat'],
    USAGE
  )
  if (typeof v === 'number') return v
  try {
    const nodes = String(v.node ?? '')
      .split(',')
      .map(s => s.trim())
      .filter(Boolean)
    if (nodes.length === 0) return fail('dfdaemon', '--node: give at least one supernode (host:port)', 2)
    const log = logger(v['log-level'], 'dfdaemon')
    let face: BlobFace | undefined
    const node = await PeerNode.start({
      nodes,
      home: v.home ?? '/var/lib/dfdaemon',
      maxBytes: rate('max-disk', v['max-disk']),
      port: num('port', v.port, DFDAEMON_PORT),
      listen: v.listen,
      ip: v.ip,
      totalLimit: rate('totallimit', v.totallimit),
      heartbeatMs: num('heartbeat', v.heartbeat, 5, 0.05) * 1000,
      log,
      extra: async (req, res) => (await face?.handle(req, res)) ?? false
    })
    face = new BlobFace(node, v.registry)
    log.info({ port: node.port, ip: node.ip, nodes }, 'dfdaemon listening')
    const why = await untilSignal()
    log.info({ why }, 'stopping')
    await node.close()
    return 0
  } catch (err) {
    return fail('dfdaemon', err)
  }
}
