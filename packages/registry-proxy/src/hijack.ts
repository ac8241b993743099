// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API first.
import 'reflect-metadata'
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import * as x509 from '@peculiar/x509'

x509.cryptoProvider.set(webcrypto as never)

type Key = webcrypto.CryptoKey

const LEAF_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const
const LEAF_DAYS = 7

/**
 * The CA of `hijack_https` (its `cert` and `key`, PEM): issues a leaf
 * certificate per host a client CONNECTs to, so the daemon can read blob
 * requests to HTTPS registries and send them through P2P. Leaves are made
 * once per host (an ECDSA P-256 key each) and kept while valid.
 */
export class HijackCa {
  private readonly leaves = new Map<string, Promise<{ ctx: SecureContext; until: number }>>()

  private constructor(
    private readonly cert: x509.X509Certificate,
    private readonly key: Key,
    private readonly signing: webcrypto.Algorithm | webcrypto.EcdsaParams
  ) {}

  static async load(certPath: string, keyPath: string): Promise<HijackCa> {
    const read = async (what: string, p: string): Promise<string> =>
      await readFile(p, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new Error(`hijack_https.${what}: ${p}: ${err.code ?? err.message}`)
      })
    let cert: x509.X509Certificate
    try {
      cert = new x509.X509Certificate(await read('cert', certPath))
    } catch (err) {
      if ((err as Error).message.startsWith('hijack_https')) throw err
      throw new Error(`hijack_https.cert: ${certPath}: not a PEM certificate`)
    }
    const pem = await read('key', keyPath)
    let keyObject: ReturnType<typeof createPrivateKey>
    try {
      keyObject = createPrivateKey(pem)
    } catch {
      throw new Error(`hijack_https.key: ${keyPath}: not a PEM private key`)
    }
    const der = keyObject.export({ type: 'pkcs8', format: 'der' })
    const [importAlg, signing] = algorithms(keyObject.asymmetricKeyType, keyObject.asymmetricKeyDetails?.namedCurve)
    const key = await webcrypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign'])
    return new HijackCa(cert, key, signing)
  }

  /** The TLS context that presents a leaf for `host` (a name or an IP address). */
  async contextFor(host: string): Promise<SecureContext> {
    let p = this.leaves.get(host)
    const now = Date.now()
    if (p !== undefined && (await p).until > now + 3600_000) return (await p).ctx
    p = this.issue(host)
    this.leaves.set(host, p)
    p.catch(() => this.leaves.delete(host))
    return (await p).ctx
  }

  private async issue(host: string): Promise<{ ctx: SecureContext; until: number }> {
    const keys = (await webcrypto.subtle.generateKey(LEAF_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
    const notAfter = new Date(Math.min(Date.now() + LEAF_DAYS * 86400_000, this.cert.notAfter.getTime()))
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: `01${randomBytes(15).toString('hex')}`,
      subject: `CN=${host}`,
      issuer: this.cert.subject,
      notBefore: new Date(Date.now() - 300_000),
      notAfter,
      signingAlgorithm: this.signing,
      publicKey: keys.publicKey as never,
      signingKey: this.key as never,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: isIP(host) === 0 ? 'dns' : 'ip', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert)
      ]
    })
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
    const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`
    const ctx = createSecureContext({ key: keyPem, cert: leaf.toString('pem') })
    return { ctx, until: notAfter.getTime() }
  }
}

/** WebCrypto's import and signing algorithms for the CA key's type. */
function algorithms(
  type: string | undefined,
  curve: string | undefined
): [webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams, webcrypto.Algorithm | webcrypto.EcdsaParams] {
  if (type === 'rsa') return [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }]
  if (type === 'ec') {
    const named = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[curve ?? '']
    if (named !== undefined)
      return [
        { name: 'ECDSA', namedCurve: named },
        { name: 'ECDSA', hash: named === 'P-256' ? 'SHA-256' : 'SHA-384' }
      ]
  }
  throw new Error(`hijack_https.key: a ${type ?? 'unknown'} ${curve ?? ''} key; want RSA or EC (P-256, P-384, P-521)`)
}
