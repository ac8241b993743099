import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { repoRoot } from './paths.js'

/** A kubelet's side of the CRI (runtime.v1), enough to pull an image and run a pod: crictl is not packaged here. */
export interface CriClient {
  call: <T = any>(service: 'runtime' | 'image', method: string, req: unknown) => Promise<T>
  close: () => void
}

export function criClient(address: string): CriClient {
  const def = loadSync(join(repoRoot, 'packages/testkit/proto/cri-runtime-v1.proto'), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true
  })
  const pkg = grpc.loadPackageDefinition(def) as any
  const creds = grpc.credentials.createInsecure()
  const clients = {
    runtime: new pkg.runtime.v1.RuntimeService(`unix://${address}`, creds),
    image: new pkg.runtime.v1.ImageService(`unix://${address}`, creds)
  }
  const call = async <T>(service: 'runtime' | 'image', method: string, req: unknown): Promise<T> =>
    await new Promise((resolve, reject) => {
      clients[service][method](req, { deadline: Date.now() + 120_000 }, (err: grpc.ServiceError | null, res: T) =>
        err === null ? resolve(res) : reject(err)
      )
    })
  const close = (): void => {
    for (const c of Object.values(clients)) c.close()
  }
  return { call, close }
}

export interface PodRun {
  sandbox: string
  container: string
  exitCode: number
  /** What the container wrote, from its CRI log (the `stdout F` lines' text). */
  output: string
}

/**
 * What a kubelet does for a one-container pod on the host network: pull,
 * sandbox, create, start, wait for exit, read the log. The pod's cgroups go
 * under `cgroupParent` (so the test kit can kill them at teardown).
 */
export async function runPod(
  cri: CriClient,
  o: { image: string; command: string[]; logDir: string; cgroupParent: string; name: string }
): Promise<PodRun> {
  await cri.call('image', 'PullImage', { image: { image: o.image } })
  const sandboxConfig = {
    metadata: { name: o.name, uid: `${o.name}-uid`, namespace: 'default', attempt: 0 },
    log_directory: o.logDir,
    linux: { cgroup_parent: o.cgroupParent, security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } }
  }
  const { pod_sandbox_id: sandbox } = await cri.call('runtime', 'RunPodSandbox', { config: sandboxConfig })
  const { container_id: container } = await cri.call('runtime', 'CreateContainer', {
    pod_sandbox_id: sandbox,
    sandbox_config: sandboxConfig,
    config: { metadata: { name: 'main', attempt: 0 }, image: { image: o.image }, command: o.command, log_path: 'main.log' }
  })
  await cri.call('runtime', 'StartContainer', { container_id: container })
  let status: any
  for (let i = 0; i < 600; i++) {
    status = (await cri.call('runtime', 'ContainerStatus', { container_id: container })).status
    if (status.state === 'CONTAINER_EXITED') break
    await sleep(100)
  }
  if (status.state !== 'CONTAINER_EXITED') throw new Error(`container ${container} did not exit: ${status.state}`)
  const log = await readFile(join(o.logDir, 'main.log'), 'utf8')
  // CRI log lines: TIMESTAMP STREAM TAG TEXT (tag F: a full line, P: a partial one).
  const output = log
    .split('\n')
    .filter(Boolean)
    .map(l => l.split(' '))
    .filter(p => p[1] === 'stdout')
    .map(p => p.slice(3).join(' ') + (p[2] === 'F' ? '\n' : ''))
    .join('')
  return { sandbox, container, exitCode: status.exit_code, output }
}

/** Stops and removes a pod's container and sandbox, as a kubelet does when the pod goes. */
export async function removePod(cri: CriClient, pod: { sandbox: string; container: string }): Promise<void> {
  await cri.call('runtime', 'StopContainer', { container_id: pod.container, timeout: 0 })
  await cri.call('runtime', 'RemoveContainer', { container_id: pod.container })
  await cri.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod.sandbox })
  await cri.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod.sandbox })
}
