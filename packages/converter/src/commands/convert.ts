import { Flags, type Interfaces } from '@oclif/core'
import { ConverterError } from '../errors.js'
import { convertOciLayout } from '../image.js'
import { Progress } from '../progress.js'
import { convertRemote } from '../remote/convert-remote.js'
import { BaseCommand, buildFlags, buildOptions } from './base.js'

type ConvertFlags = Interfaces.InferredFlags<typeof Convert.flags>

export default class Convert extends BaseCommand {
  static summary = 'Convert an image: registry to registry (--source/--target), or an OCI image layout to files (--oci-dir/--output)'
  static examples = [
    '<%= config.bin %> convert --source registry.local:5000/app:1 --target registry.local:5000/app:1-nydus',
    '<%= config.bin %> convert --source REG/app:1 --target REG/app:1 --merge-platform --all-platforms --output-json convert.json',
    '<%= config.bin %> convert --oci-dir ./busybox-oci:latest --output ./busybox-nydus'
  ]

  static flags = {
    source: Flags.string({ description: 'source image REGISTRY/REPO:TAG (or @sha256:…)' }),
    target: Flags.string({ description: 'target image REGISTRY/REPO:TAG' }),
    'oci-dir': Flags.string({ description: 'OCI image layout, optionally with :REF to pick an image' }),
    output: Flags.string({ char: 'o', description: 'output directory (with --oci-dir)' }),
    platform: Flags.string({
      description: "platform to convert from an image index, e.g. linux/arm64 (repeatable; default: this machine's)",
      multiple: true
    }),
    'all-platforms': Flags.boolean({ description: 'convert every platform of an image index' }),
    'merge-platform': Flags.boolean({ description: 'write an index holding the source image beside the converted one' }),
    'prefetch-patterns': Flags.string({ description: "file of paths or globs, one a line, for the bootstrap's prefetch table" }),
    'backend-type': Flags.string({ description: 'where data blobs go', options: ['registry', 's3'], default: 'registry' }),
    'backend-config': Flags.string({ description: "JSON config of the s3 backend (as in nydusd's device.backend.config)" }),
    'source-insecure': Flags.boolean({ description: 'source registry over plain HTTP or HTTPS without certificate checks' }),
    'target-insecure': Flags.boolean({ description: 'target registry over plain HTTP or HTTPS without certificate checks' }),
    'build-cache': Flags.string({
      description:
        "image REGISTRY/REPO:TAG of converted layers: layers found there are not pulled or converted again; written after the conversion (nydusify's --build-cache)"
    }),
    'build-cache-max-records': Flags.integer({
      description: 'layers the build cache keeps, the most recently used first',
      default: 200,
      min: 1,
      max: 10000
    }),
    'build-cache-insecure': Flags.boolean({ description: 'build cache registry over plain HTTP or HTTPS without certificate checks' }),
    'work-dir': Flags.string({ description: 'directory for temporary blobs (default: the system temp dir)' }),
    ...buildFlags
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(Convert)
    if (flags.source !== undefined || flags.target !== undefined) return await this.remote(flags)
    if (flags['oci-dir'] === undefined || flags.output === undefined)
      throw new ConverterError('ERR_BAD_ARGUMENT', 'give --source and --target (registry to registry), or --oci-dir and --output')
    const progress = new Progress('converting ')
    const res = await convertOciLayout({
      ociDir: flags['oci-dir'],
      output: flags.output,
      platform: flags.platform?.[0],
      ...buildOptions(flags),
      onProgress: (l, b) => progress.update(b, `layer ${l + 1} `)
    })
    progress.done()
    await this.writeJson(flags['output-json'], {
      bootstrap: res.bootstrap,
      root_digest: res.rootDigest,
      blobs: res.blobs,
      layers: res.layers
    })
    if (flags['output-json'] !== '-')
      this.print(`root digest ${res.rootDigest}\nbootstrap ${res.bootstrap}, ${res.layers.length} layers, ${res.blobs.length} blobs`)
  }

  private async remote(flags: ConvertFlags): Promise<void> {
    if (flags.source === undefined || flags.target === undefined)
      throw new ConverterError('ERR_BAD_ARGUMENT', '--source and --target go together')
    if (flags['oci-dir'] !== undefined || flags.output !== undefined)
      throw new ConverterError('ERR_BAD_ARGUMENT', '--oci-dir/--output cannot be combined with --source/--target')
    if (flags['all-platforms'] && flags.platform !== undefined)
      throw new ConverterError('ERR_BAD_ARGUMENT', '--platform and --all-platforms exclude each other')
    const progress = new Progress('')
    const pulled = new Map<string, number>()
    const pushed = new Map<string, number>()
    const res = await convertRemote({
      source: flags.source,
      target: flags.target,
      platforms: flags.platform,
      allPlatforms: flags['all-platforms'],
      mergePlatform: flags['merge-platform'],
      prefetchPatterns: flags['prefetch-patterns'],
      backendType: flags['backend-type'] as 'registry' | 's3',
      backendConfig: flags['backend-config'],
      sourceInsecure: flags['source-insecure'],
      targetInsecure: flags['target-insecure'],
      buildCache: flags['build-cache'],
      buildCacheMaxRecords: flags['build-cache-max-records'],
      buildCacheInsecure: flags['build-cache-insecure'],
      workDir: flags['work-dir'],
      ...buildOptions(flags),
      onProgress: p => {
        const key = `${p.image}/${p.layer}`
        if (p.phase === 'pull') pulled.set(key, p.bytes)
        else pushed.set(key, (pushed.get(key) ?? 0) + p.bytes)
        progress.update(
          pulled.get(key) ?? 0,
          `layer ${p.layer + 1}/${p.layers}: converted, pushed ${((pushed.get(key) ?? 0) / 1e6).toFixed(1)} MB;`
        )
      }
    })
    progress.done()
    await this.writeJson(flags['output-json'], res)
    for (const w of res.build_cache?.warnings ?? []) process.stderr.write(`nydus-image convert: warning: ${w}\n`)
    if (flags['output-json'] === '-') return
    const layers = res.images.reduce((n, i) => n + i.layers.length, 0)
    this.print(
      `converted ${res.source.ref} (${res.source.digest}) to ${res.target.ref} (${res.target.digest})\n` +
        `${res.images.length} image(s), ${layers} layer(s); pushed ${(res.pushed_bytes / 1e6).toFixed(1)} MB` +
        (res.dict_saved_bytes > 0 ? `; chunk dict saved ${(res.dict_saved_bytes / 1e6).toFixed(1)} MB` : '') +
        (res.build_cache !== undefined ? `; build cache ${res.build_cache.hits} hit(s), ${res.build_cache.misses} miss(es)` : '') +
        `; ${res.seconds.toFixed(1)} s`
    )
    for (const i of res.images)
      if (i.prefetch_unmatched.length > 0)
        process.stderr.write(
          `nydus-image convert: warning: prefetch patterns matched nothing in ${i.platform}: ${i.prefetch_unmatched.join(', ')}\n`
        )
  }
}
