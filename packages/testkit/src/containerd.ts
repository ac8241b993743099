import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { tempDir } from './paths.js'
import { killUnder, ownedDaemon, reaper, spawnOwned } from './reaper.js'
import { run, type RunResult } from './run.js'

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

export interface TestContainerd {
  address: string
  /** A namespace of its own: runc's state (/run/containerd/runc/NS) and the containers' cgroups (/NS/ID) are per namespace. */
  namespace: string
  root: string
  state: string
  /** `ctr` against this containerd, in its namespace. */
  ctr: (args: string[]) => Promise<RunResult>
  /** `ctr-remote image rpull --plain-http --snapshotter SNAPSHOTTER REF`: a lazy pull (the remote snapshotter labels). */
  rpull: (ref: string, o?: { snapshotter?: string; timeoutMs?: number }) => Promise<RunResult>
  logs: () => string
  stop: () => Promise<void>
}

/**
 * Debian's containerd 1.6 with its own root, state and socket under a temp
 * directory, the CRI plugin off, and `proxyPlugins` (name -> socket) as
 * snapshotters. Stopped, and its leftover mounts detached, when the test ends.
 */
export interface ContainerdOptions {
  proxyPlugins?: Record<string, string>
  /** Directories put first on PATH (mount helpers the shims run). */
  path?: string[]
  /**
   * The CRI plugin on (namespace k8s.io, host-network pods only: no CNI here):
   * its sandbox image, its snapshotter, and registries it reaches over plain HTTP.
   */
  cri?: {
    sandboxImage: string
    snapshotter: string
    plainHttp: string[]
    /** CRI's `registry.config_path`: a hosts.toml directory (then `plainHttp` must be empty: containerd refuses both). */
    configPath?: string
  }
}

export async function startContainerd(t: Teardown, o: ContainerdOptions = {}): Promise<TestContainerd> {
  const dir = await tempDir(t, 'containerd-')
  const root = join(dir, 'root')
  const state = join(dir, 'state')
  const address = join(dir, 'containerd.sock')
  const namespace = `nydustest-${randomBytes(4).toString('hex')}`
  const proxies = Object.entries(o.proxyPlugins ?? {})
    .map(([name, sock]) => `[proxy_plugins.${name}]\n  type = "snapshot"\n  address = "${sock}"\n`)
    .join('')
  const cfg = join(dir, 'config.toml')
  const plugins = o.cri === undefined ? 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n' : ''
  await writeFile(
    cfg,
    `version = 2\nroot = "${root}"\nstate = "${state}"\n${plugins}` +
      `[grpc]\n  address = "${address}"\n[ttrpc]\n  address = "${address}.ttrpc"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n${proxies}` +
      (o.cri === undefined ? '' : criConfig(o.cri, dir))
  )
  const env = { ...process.env, PATH: [...(o.path ?? []), process.env.PATH].join(':') }
  const proc = spawnOwned('containerd', ['--config', cfg, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'], env })
  // Shims and containers outlive containerd: the reaper stops whatever names this directory and detaches its mounts.
  reaper.under(dir)
  reaper.cgroup(namespace)
  reaper.dir(join('/run/containerd/runc', namespace))
  let stderr = ''
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  const ctr = async (args: string[]): Promise<RunResult> =>
    // The same PATH as containerd's: ctr mounts a rootfs itself to read the image's /etc/passwd.
    await run('ctr', ['--address', address, '--namespace', namespace, ...args], { timeoutMs: 60_000, env })
  const rpull = async (ref: string, ro: { snapshotter?: string; timeoutMs?: number } = {}): Promise<RunResult> =>
    await run(
      'ctr-remote',
      ['--address', address, '--namespace', namespace, 'image', 'rpull', '--plain-http', '--snapshotter', ro.snapshotter ?? 'nydus', ref],
      { timeoutMs: ro.timeoutMs ?? 120_000, env }
    )
  const stop = async (): Promise<void> => {
    // Containers first (they are not children of anything here), then their shims, then containerd.
    await run('sh', [
      '-c',
      `cat /sys/fs/cgroup/*/${namespace}/*/cgroup.procs /sys/fs/cgroup/*/${namespace}/cgroup.procs 2>/dev/null | xargs -r kill -9`
    ])
    await run('sh', ['-c', `pkill -9 -f 'containerd-shim.*${address}' || true`])
    // CRI's containers live in namespace k8s.io, shared by every containerd: only this one's runc state goes.
    if (o.cri !== undefined) {
      const ids = (await run('ctr', ['--address', address, '--namespace', 'k8s.io', 'containers', 'ls', '-q'], { timeoutMs: 10_000 }))
        .stdout
      for (const id of ids.split('\n').filter(Boolean)) await run('rm', ['-rf', join('/run/containerd/runc/k8s.io', id)])
      await run('rmdir', ['/run/containerd/runc/k8s.io'])
    }
    proc.kill('SIGTERM')
    await Promise.race([exited, sleep(5000)])
    if (proc.exitCode === null) proc.kill('SIGKILL')
    await run('sh', ['-c', `grep -o ' ${state}[^ ]*\\| ${root}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`])
    await run('sh', [
      '-c',
      `rm -rf /run/containerd/runc/${namespace}; rmdir /sys/fs/cgroup/*/${namespace}/* /sys/fs/cgroup/*/${namespace} 2>/dev/null; true`
    ])
  }
  t.teardown(stop)
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`containerd exited: ${stderr}`)
    if ((await ctr(['version'])).code === 0) break
    if (i > 1200) throw new Error(`containerd did not answer on ${address}: ${stderr}`)
    await sleep(50)
  }
  return { address, namespace, root, state, ctr, rpull, logs: () => stderr, stop }
}

export interface TestSnapshotter {
  address: string
  root: string
  pid?: number
  logs: () => string
  stop: () => Promise<void>
}

/** The real `containerd-nydus-grpc` bin with a fresh root; stopped when the test ends. */
export async function startSnapshotter(
  t: Teardown,
  bin: string,
  o: { root?: string; address?: string; args?: string[] } = {}
): Promise<TestSnapshotter> {
  const dir = await tempDir(t, 'snapshotter-')
  const root = o.root ?? join(dir, 'root')
  const address = o.address ?? join(dir, 'snapshotter.sock')
  // The nydusd daemons it starts are detached on purpose (they outlive a snapshotter restart); they name the root.
  reaper.under(root)
  t.teardown(async () => {
    await killUnder(root)
  })
  const {
    proc,
    stderr: logs,
    stop
  } = ownedDaemon(t, process.execPath, [bin, '--root', root, '--address', address, '--log-level', 'debug', ...(o.args ?? [])])
  for (let i = 0; !logs().includes('"serving"'); i++) {
    if (proc.exitCode !== null) throw new Error(`snapshotter exited ${proc.exitCode}: ${logs()}`)
    if (i > 1200) throw new Error(`snapshotter did not start: ${logs()}`)
    await sleep(50)
  }
  return { address, root, pid: proc.pid, logs, stop }
}

/** CRI's section: kubelet-like defaults that work here (root lacks CAP_SYS_RESOURCE; no CNI; no fixed ports). */
function criConfig(cri: NonNullable<ContainerdOptions['cri']>, dir: string): string {
  const p = '[plugins."io.containerd.grpc.v1.cri"]'
  const mirrors = cri.plainHttp.map(h => `${p.slice(0, -1)}.registry.mirrors."${h}"]\n  endpoint = ["http://${h}"]\n`).join('')
  return (
    `${p}\n  sandbox_image = "${cri.sandboxImage}"\n  restrict_oom_score_adj = true\n` +
    `  stream_server_address = "127.0.0.1"\n  stream_server_port = "0"\n  enable_selinux = false\n` +
    `${p.slice(0, -1)}.containerd]\n  snapshotter = "${cri.snapshotter}"\n  disable_snapshot_annotations = false\n` +
    `${p.slice(0, -1)}.cni]\n  bin_dir = "${join(dir, 'cni-bin')}"\n  conf_dir = "${join(dir, 'cni-conf')}"\n${mirrors}` +
    (cri.configPath === undefined ? '' : `${p.slice(0, -1)}.registry]\n  config_path = "${cri.configPath}"\n`)
  )
}
