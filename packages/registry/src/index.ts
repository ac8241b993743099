export { RegistryError, type RegistryErrorCode } from './errors.js'
export { CredentialStore, type RegistryCredentials } from './credentials.js'
export { RegistryAuth, parseParams } from './registry-auth.js'
export {
  RegistryClient,
  MANIFEST_TYPES,
  insecureScheme,
  type RegistryClientOptions,
  type FetchedManifest,
  type PushResult
} from './registry-client.js'
export { StreamedBlobUpload } from './streamed-upload.js'
export { readRange, transportError } from './http-util.js'
export * from './oci-image.js'
