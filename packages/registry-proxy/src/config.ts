import { readFile } from 'node:fs/promises'
import { parse } from 'yaml'
import { z } from 'zod/v3'

const Certs = z.array(z.string().min(1)).default([])

/** Dragonfly v1's dfdaemon.yml: the keys a v1 user already has, same names and meanings. */
export const DfdaemonConfig = z
  .object({
    registry_mirror: z
      .strictObject({
        /** The registry a request that names none goes to (v1: https://index.docker.io). */
        remote: z
          .string()
          .refine(u => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'must be an http or https URL')
          .optional(),
        insecure: z.boolean().default(false),
        /** CA certificates (PEM files) the remote's TLS must chain to. */
        certs: Certs,
        /** Everything to the remote directly: no P2P at all. */
        direct: z.boolean().default(false)
      })
      .default({ insecure: false, certs: [], direct: false }),
    proxies: z
      .array(
        z.strictObject({
          regx: z.string().min(1),
          use_https: z.boolean().default(false),
          direct: z.boolean().default(false),
          redirect: z.string().default('')
        })
      )
      .default([{ regx: 'blobs/sha256.*', use_https: false, direct: false, redirect: '' }]),
    hijack_https: z
      .strictObject({
        cert: z.string().min(1),
        key: z.string().min(1),
        hosts: z.array(z.strictObject({ regx: z.string().min(1), insecure: z.boolean().default(false), certs: Certs })).default([])
      })
      .optional()
  })
  // v1 keys this daemon takes as flags or does not need (dfget_flags, ratelimit, verbose, ...) are let through.
  .passthrough()

export type DfdaemonConfig = z.infer<typeof DfdaemonConfig>

/** What is wrong, in one line: the field's path and the complaint. */
function describe(err: z.ZodError): string {
  const i = err.issues[0]
  return `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`
}

/** A config from YAML text; throws one line naming the file and the field. */
export function parseConfig(text: string, where = 'config'): DfdaemonConfig {
  let raw: unknown
  try {
    raw = parse(text, { prettyErrors: false }) ?? {}
  } catch (err) {
    throw new Error(`${where}: not YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: want a mapping at the top level`)
  const r = DfdaemonConfig.safeParse(raw)
  if (!r.success) throw new Error(`${where}: ${describe(r.error)}`)
  for (const rule of r.data.proxies) compile(rule.regx, `${where}: proxies regx`)
  for (const h of r.data.hijack_https?.hosts ?? []) compile(h.regx, `${where}: hijack_https.hosts regx`)
  return r.data
}

export async function loadConfig(path: string): Promise<DfdaemonConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new Error(`--config ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parseConfig(text, path)
}

/** A rule's regular expression (Go's RE2 syntax in v1; the common subset is the same). */
export function compile(regx: string, what: string): RegExp {
  try {
    return new RegExp(regx)
  } catch {
    throw new Error(`${what} ${JSON.stringify(regx)}: not a regular expression`)
  }
}
