import { z } from 'zod/v3'

/**
 * The original nydusd's s3 backend fields, plus addressing and connect_to;
 * shared by nydusd and `nydus-image convert`. A subpath of its own
 * (`@nydusjs/storage/s3-config`) so that importing the package does not load zod.
 */
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

/** An absolute http(s) URL (zod 3 has no `z.url({ protocol })`). */
export const httpUrl = () =>
  z.string().refine(u => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'must be an http or https URL')

/** `a.b: message; c: message` naming every wrong field. */
export function schemaIssues(err: z.ZodError): string {
  return err.issues.map(i => `${i.path.length === 0 ? '(root)' : i.path.join('.')}: ${i.message}`).join('; ')
}
