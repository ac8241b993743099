import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'

/** `du` of a directory tree: bytes in 512-byte blocks as allocated, and inodes (hard links counted once). */
export async function diskUsage(root: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>()
  let size = 0
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: false }).catch(() => undefined)
    if (st === undefined) return
    const id = `${st.dev}:${st.ino}`
    if (seen.has(id)) return
    seen.add(id)
    size += st.blocks * 512
    if (st.isDirectory()) for (const e of await readdir(p).catch(() => [] as string[])) await walk(join(p, e))
  }
  await walk(root)
  return { size, inodes: seen.size }
}
