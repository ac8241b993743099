import { networkInterfaces } from 'node:os'
import type { Socket } from 'node:net'

let cached: { at: number; addrs: Set<string> } | undefined

/**
 * Whether a connection comes from this host (loopback, or one of its own
 * addresses): the mirror and the forward proxy serve only those, so a peer
 * of the swarm cannot use a node as an open proxy into its network.
 */
export function isLocalClient(socket: Socket): boolean {
  const a = (socket.remoteAddress ?? '').replace(/^::ffff:/, '')
  if (a.startsWith('127.') || a === '::1') return true
  if (cached === undefined || Date.now() - cached.at > 10_000) {
    const addrs = new Set<string>()
    for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) addrs.add(i.address)
    cached = { at: Date.now(), addrs }
  }
  return cached.addrs.has(a)
}
