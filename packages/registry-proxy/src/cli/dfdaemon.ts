import { BlobFace, DFDAEMON_PORT, daemonFlags, fail, logger, num, PeerNode, rate, untilSignal } from '@nydusjs/p2p-backend'
import { compile, type DfdaemonConfig, loadConfig, parseConfig } from '../config.js'
import { ConnectProxy } from '../connect.js'
import type { HijackCa } from '../hijack.js'
import { isLocalClient } from '../local-clients.js'
import { RegistryMirror } from '../mirror.js'
import { ProxyRules } from '../rules.js'
import { TlsTrust } from '../tls-trust.js'

const USAGE = `dfdaemon: the node daemon of the swarm and its registry mirror (Dragonfly v1's dfdaemon)

Usage: dfdaemon --node HOST:PORT[,HOST:PORT...] [--port ${DFDAEMON_PORT}] [--config FILE] [--registry URL]
                [--home DIR] [--ip IP] [--totallimit RATE] [--max-disk SIZE] [--log-level info]

  --node LIST        supernodes, tried in order (a dead one is left for the next)
  --port N           the registry mirror and HTTP(S) proxy for this host's clients,
                     and pieces to peers (GET /peer/file/{task}) (default ${DFDAEMON_PORT})
  --config FILE      v1's dfdaemon.yml: registry_mirror, proxies, hijack_https
  --registry URL     the upstream registry when a request names none (before
                     registry_mirror.remote; X-Dragonfly-Registry and ?ns= win)
  --listen ADDR      address to bind (default 0.0.0.0)
  --home DIR         where pieces are kept (default /var/lib/dfdaemon)
  --ip IP            the address peers reach this node at (default: the one
                     that reaches the supernode)
  --totallimit RATE  upload bandwidth for peers, e.g. 20M (bytes/s)
  --max-disk SIZE    disk for pieces, e.g. 10G; least recently used go first
  --heartbeat S      seconds between heartbeats (default 5)`

const FLAGS = ['node', 'port', 'config', 'listen', 'home', 'registry', 'ip', 'totallimit', 'max-disk', 'heartbeat']

export async function main(argv: string[]): Promise<number> {
  const v = daemonFlags('dfdaemon', argv, FLAGS, USAGE)
  if (typeof v === 'number') return v
  let config: DfdaemonConfig
  let trust: TlsTrust
  let ca: HijackCa | undefined
  try {
    config = v.config === undefined ? parseConfig('') : await loadConfig(v.config)
    if (v.registry !== undefined && !/^https?:\/\/[^/]+\/?$/.test(v.registry))
      throw new Error(`--registry ${JSON.stringify(v.registry)}: want http(s)://host[:port]`)
    trust = new TlsTrust(config, v.registry ?? config.registry_mirror.remote)
    const h = config.hijack_https
    // Loaded only when hijacking is configured: the X.509 library is the largest thing this daemon could load.
    ca = h === undefined ? undefined : await (await import('../hijack.js')).HijackCa.load(h.cert, h.key)
  } catch (err) {
    return fail('dfdaemon', err, 2)
  }
  const nodes = String(v.node ?? '')
    .split(',')
    .map(s => s.trim())
    .filter(Boolean)
  if (nodes.length === 0) return fail('dfdaemon', '--node: give at least one supernode (host:port)', 2)
  try {
    const log = logger(v['log-level'], 'dfdaemon')
    let mirror: RegistryMirror | undefined
    let proxy: ConnectProxy | undefined
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
      extra: async (req, res) => (await mirror?.handle(req, res)) ?? false,
      connect: (req, socket, head) => (proxy === undefined ? socket.destroy() : proxy.handle(req, socket, head))
    })
    mirror = new RegistryMirror({
      face: new BlobFace(node),
      rules: new ProxyRules(config),
      trust,
      config,
      registry: v.registry,
      log
    })
    const hijack = (config.hijack_https?.hosts ?? []).map(x => compile(x.regx, 'hijack_https.hosts regx'))
    proxy = new ConnectProxy({ mirror, ca, hijack, log, allowed: isLocalClient })
    log.info({ port: node.port, ip: node.ip, nodes, hijack: hijack.length }, 'dfdaemon listening')
    const why = await untilSignal()
    log.info({ why }, 'stopping')
    await proxy.close()
    await node.close()
    await trust.close()
    return 0
  } catch (err) {
    return fail('dfdaemon', err)
  }
}
