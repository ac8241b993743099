import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { nydusImageBin } from './paths.js'
import { spawnOwned } from './reaper.js'

const exec = promisify(execFile)

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to completion; never throws on a non-zero exit. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}
): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const p = spawnOwned(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] })
    // A bounded command is killed at its limit; its result then says so on stderr.
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            err.push(Buffer.from(`\n${cmd}: killed after ${opts.timeoutMs} ms`))
            p.kill('SIGKILL')
          }, opts.timeoutMs)
    const out: Buffer[] = []
    const err: Buffer[] = []
    p.stdout!.on('data', (b: Buffer) => out.push(b))
    p.stderr!.on('data', (b: Buffer) => err.push(b))
    p.on('error', reject)
    p.on('close', () => clearTimeout(timer))
    p.on('close', code => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }))
    p.stdin!.end(opts.input)
  })
}

/** Runs a command and throws with its stderr when it fails. */
export async function mustRun(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`)
  return r.stdout
}

/** The real `nydus-image` bin, in a child process. */
export async function nydusImage(args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return await run(process.execPath, [nydusImageBin, ...args], { ...opts, env: { ...process.env, NO_COLOR: '1' } })
}

export async function which(cmd: string): Promise<boolean> {
  try {
    await exec('sh', ['-c', `command -v ${cmd}`])
    return true
  } catch {
    return false
  }
}

/**
 * `nydus-image convert` between plain-HTTP registries on loopback, with its
 * JSON report; throws with stderr when it fails.
 */
export async function convertImage<R>(source: string, target: string, extra: string[] = []): Promise<{ report: R; stderr: string }> {
  const r = await nydusImage([
    'convert',
    '--source',
    source,
    '--target',
    target,
    '--source-insecure',
    '--target-insecure',
    '--output-json',
    '-',
    ...extra
  ])
  if (r.code !== 0) throw new Error(`nydus-image convert ${source} -> ${target} exited ${r.code}: ${r.stderr.trim()}`)
  return { report: JSON.parse(r.stdout) as R, stderr: r.stderr }
}
