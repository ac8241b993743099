import { rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { statusOf } from '@nydusjs/errors'
import type { Logger } from 'pino'
import type { SnapshotterMetrics } from './metrics.js'
import type { Info, OverlaySnapshotter } from './snapshotter.js'

const PROTO = join(dirname(fileURLToPath(import.meta.url)), '../../proto/snapshots.proto')

interface Timestamp {
  seconds: number
  nanos: number
}

const ts = (ms: number): Timestamp => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 })
const wire = (i: Info) => ({
  name: i.name,
  parent: i.parent,
  kind: i.kind,
  created_at: ts(i.created),
  updated_at: ts(i.updated),
  labels: i.labels
})

type Unary = (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => void

/**
 * containerd's Snapshots service over gRPC on a unix socket (a proxy
 * snapshotter). Every failure is answered with the status the error table
 * gives its code (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ...) and a
 * one-line message.
 */
export async function serveSnapshots(
  address: string,
  sn: OverlaySnapshotter,
  log: Logger,
  metrics?: SnapshotterMetrics
): Promise<grpc.Server> {
  const def = loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true })
  const pkg = grpc.loadPackageDefinition(def) as any
  const service = pkg.containerd.services.snapshots.v1.Snapshots.service as grpc.ServiceDefinition
  const unary =
    (name: string, fn: (req: any) => Promise<unknown> | unknown): Unary =>
    (call, cb) => {
      log.debug({ method: name, key: call.request?.key, parent: call.request?.parent, labels: call.request?.labels }, 'request')
      const done = metrics?.observe(name)
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          res => {
            done?.()
            cb(null, res ?? {})
          },
          (err: Error) => {
            const { grpc: code, code: ours } = statusOf(err)
            done?.(ours)
            // ALREADY_EXISTS is also how a remote layer is reported to containerd: not a failure then.
            const level = ours === 'ERR_SNAPSHOT_EXISTS' ? 'debug' : 'warn'
            log[level]({ method: name, key: call.request?.key, code: ours, err: err.message }, 'request failed')
            cb({ code, details: `${err.message} [${ours}]` })
          }
        )
    }
  const server = new grpc.Server()
  server.addService(service, {
    Prepare: unary('Prepare', async r => ({ mounts: await sn.prepare(r.key, r.parent, r.labels ?? {}) })),
    View: unary('View', async r => ({ mounts: await sn.view(r.key, r.parent, r.labels ?? {}) })),
    Mounts: unary('Mounts', async r => ({ mounts: await sn.mounts(r.key) })),
    Commit: unary('Commit', async r => {
      await sn.commit(r.name, r.key, r.labels ?? {})
    }),
    Remove: unary('Remove', async r => {
      await sn.remove(r.key)
    }),
    Stat: unary('Stat', r => ({ info: wire(sn.stat(r.key)) })),
    Update: unary('Update', async r => ({
      info: wire(await sn.update(r.info?.name ?? '', r.info?.labels ?? {}, r.update_mask?.paths ?? []))
    })),
    Usage: unary('Usage', async r => await sn.usage(r.key)),
    Cleanup: unary('Cleanup', async () => {
      await sn.cleanup()
    }),
    List: (call: grpc.ServerWritableStream<any, any>) => {
      metrics?.observe('List')()
      try {
        const all = sn.list(call.request.filters ?? [])
        // containerd reads pages; 100 infos a message keeps each one small.
        for (let i = 0; i < all.length; i += 100) call.write({ info: all.slice(i, i + 100).map(wire) })
        call.end()
      } catch (err) {
        const { grpc: code, code: ours } = statusOf(err)
        call.destroy(Object.assign(new Error(`${(err as Error).message} [${ours}]`), { code }))
      }
    }
  })
  await rm(address, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${address}`, grpc.ServerCredentials.createInsecure(), err => (err === null ? resolve() : reject(err)))
  })
  return server
}
