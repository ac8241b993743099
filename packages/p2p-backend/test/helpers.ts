import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { dfgetBin, pushBlob, run, startFaultProxy, startRegistry, tempDir, type FaultProxy, type TestRegistry } from '@nydusjs/testkit'

export interface Origin {
  reg: TestRegistry
  proxy: FaultProxy
  /** The blob's URL at the origin (through the counting proxy). */
  url: string
  digest: string
  data: Buffer
}

/** docker-registry holding one random blob of `size` bytes, behind a fault proxy that counts what it serves. */
export async function blobOrigin(t: ExecutionContext, size: number, repo = 'p2p/blob'): Promise<Origin> {
  const reg = await startRegistry(t)
  const data = randomBytes(size)
  const digest = await pushBlob(reg, repo, data)
  const proxy = await startFaultProxy(t, reg.url)
  return { reg, proxy, url: `${proxy.url}/v2/${repo}/blobs/${digest}`, digest, data }
}

export const originBytes = (o: Origin): number => o.proxy.blobBytes().get(o.digest) ?? 0

/** dfget into a temp file; its exit code, stderr and the file's bytes (undefined when absent). */
export async function dfget(
  t: ExecutionContext,
  args: string[],
  prefix: string[] = []
): Promise<{ code: number | null; stderr: string; out?: Buffer; file: string }> {
  const dir = await tempDir(t)
  const file = join(dir, 'out')
  const cmd = [...prefix, process.execPath, dfgetBin, '-o', file, '--home', join(dir, 'home'), ...args]
  const r = await run(cmd[0], cmd.slice(1), { timeoutMs: 240_000 })
  const out = await readFile(file).catch(() => undefined)
  return { code: r.code, stderr: r.stderr, out, file }
}

/** A Prometheus counter's value (summed over its labels) from exposition text. */
export function metric(text: string, name: string, labels = ''): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name || !(m[2] ?? '').includes(labels)) continue
    sum += Number(m[3])
  }
  return sum
}
