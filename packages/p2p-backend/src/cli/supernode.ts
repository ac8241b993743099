import { readFile } from 'node:fs/promises'
import { SUPERNODE_PORT } from '../protocol/codes.js'
import { SupernodeServer } from '../supernode/server.js'
import { Supernode } from '../supernode/service.js'
import { daemonFlags, fail, logger, num, untilSignal } from './common.js'

const USAGE = `supernode: schedules peers and keeps the one origin copy of each task (Dragonfly v1's supernode)

Usage: supernode [--port 8002] [--home DIR] [--listen ADDR] [--peer-expire S] [--task-expire-time S] [--log-level info]

  --port N            HTTP API and piece uploads (default ${SUPERNODE_PORT})
  --listen ADDR       address to bind (default 0.0.0.0)
  --home DIR          where task copies are kept (default /var/lib/supernode)
  --peer-expire S     a peer not heard from for S seconds leaves the schedule (default 30)
  --task-expire-time S
                      a task no peer asked about for S seconds is dropped with its copy (default 180)
  --long-poll S       how long /peer/task waits for schedulable pieces (default 5)
  --redis URL         share task state with other supernodes (redis://host:port)
  --ca-file FILE      PEM of CAs an origin's TLS may chain to, beside the system's
                      (registries with a private CA)

API: POST /peer/registry, GET /peer/task, /peer/piece/suc, /peer/piece/error,
/peer/service/down, POST /peer/heartbeat, GET /peer/file/{task}, /_ping,
/metrics, POST /preheat, GET /preheat/{id}.`

export async function main(argv: string[]): Promise<number> {
  const v = daemonFlags(
    'supernode',
    argv,
    ['port', 'listen', 'home', 'peer-expire', 'task-expire-time', 'long-poll', 'redis', 'ca-file'],
    USAGE
  )
  if (typeof v === 'number') return v
  const originCa = await readCaFile(v['ca-file'])
  if (typeof originCa === 'number') return originCa
  try {
    const log = logger(v['log-level'], 'supernode')
    const sn = await Supernode.start({
      home: v.home ?? '/var/lib/supernode',
      log,
      limits: { peerExpireMs: num('peer-expire', v['peer-expire'], 30, 0.1) * 1000 },
      longPollMs: num('long-poll', v['long-poll'], 5, 0) * 1000,
      redis: v.redis,
      taskExpireMs: num('task-expire-time', v['task-expire-time'], 180, 0.1) * 1000,
      originCa
    })
    const server = new SupernodeServer(sn)
    const port = await server.listen(num('port', v.port, SUPERNODE_PORT, 0), v.listen ?? '0.0.0.0')
    log.info({ port }, 'supernode listening')
    const why = await untilSignal()
    log.info({ why }, 'stopping')
    await server.close()
    await sn.close()
    return 0
  } catch (err) {
    return fail('supernode', err)
  }
}

/** The PEM of `--ca-file`, or exit code 2 after one line saying what is wrong with it. */
async function readCaFile(path: string | undefined): Promise<string | undefined | number> {
  if (path === undefined) return undefined
  try {
    const pem = await readFile(path, 'utf8')
    if (pem.includes('-----BEGIN CERTIFICATE-----')) return pem
    return fail('supernode', `--ca-file ${path}: no PEM certificate in it`, 2)
  } catch (err) {
    return fail('supernode', `--ca-file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2)
  }
}
