import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { request } from 'node:http'

/** Node flags every nydusd runs with (its bin's first line has them too): a small young generation, see docs/architecture.md. */
export const NYDUSD_NODE_FLAGS = ['--max-semi-space-size=1']

export async function readPid(path: string): Promise<number | undefined> {
  return pidOf(await readFile(path, 'utf8').catch(() => ''))
}

export function pidOf(text: string): number | undefined {
  const n = Number(text.trim())
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

export function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

/** Running, and not a zombie: a daemon whose parent died is reaped only if init does so. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

export async function isMounted(mnt: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8')
  return mounts.split('\n').some(l => l.split(' ')[4] === mnt)
}

/** An HTTP request to a nydusd's API socket: its status and body; status 0 and the error's message when it does not answer. */
export async function nydusdApi(sock: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return await new Promise(resolve => {
    const req = request({ socketPath: sock, method, path }, res => {
      const parts: Buffer[] = []
      res.on('data', (b: Buffer) => parts.push(b))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }))
    })
    req.on('error', (err: Error) => resolve({ status: 0, body: err.message }))
    req.end(body)
  })
}
