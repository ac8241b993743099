import { z } from 'zod'
import type { S3BackendOptions } from './s3.js'

/** The original nydusd's s3 backend fields, plus addressing and connect_to; shared by nydusd and `nydus-image convert`. */
export const S3ConfigSchema = z.strictObject({
  endpoint: z.string().min(1),
  scheme: z.enum(['http', 'https']).default('https'),
  region: z.string().optional(),
  bucket_name: z.string().min(1),
  object_prefix: z.string().default(''),
  access_key_id: z.string().optional(),
  access_key_secret: z.string().optional(),
  addressing: z.enum(['path', 'virtual']).default('path'),
  connect_to: z.string().optional(),
  skip_verify: z.boolean().default(false),
  timeout: z.number().positive().default(30)
})

export type S3Config = z.infer<typeof S3ConfigSchema>

export function s3Options (c: S3Config): S3BackendOptions {
  return {
    endpoint: c.endpoint, scheme: c.scheme, region: c.region, bucket: c.bucket_name, objectPrefix: c.object_prefix, accessKeyId: c.access_key_id,
    secretAccessKey: c.access_key_secret, addressing: c.addressing, connectTo: c.connect_to, skipVerify: c.skip_verify, timeoutMs: c.timeout * 1000
  }
}

/** `a.b: message; c: message` naming every wrong field. */
export function schemaIssues (err: z.ZodError): string {
  return err.issues.map(i => `${i.path.length === 0 ? '(root)' : i.path.join('.')}: ${i.message}`).join('; ')
}
