import { exportJWK, exportSPKI, generateKeyPair, importJWK, importSPKI, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose'

/** What an upload token allows: `dst` (a peer's cid) may fetch pieces `pieces` of `task` from the peer `src`. */
export interface Grant {
  task: string
  src: string
  dst: string
  pieces: number[]
}

const ALG = 'EdDSA'
/** Long enough for a slow piece on a congested link, short enough that a leaked token is soon useless. */
export const TOKEN_TTL_S = 120

/**
 * Signs piece assignments. The supernode holds the private key; peers get
 * the public key when they register and check every upload request against
 * it, so a peer uploads only what the supernode scheduled, to whom it
 * scheduled it, and nobody can make a token but a supernode.
 */
export class TokenSigner {
  private constructor(
    private readonly key: CryptoKey,
    readonly publicPem: string
  ) {}

  static async generate(): Promise<TokenSigner> {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { crv: 'Ed25519', extractable: true })
    return new TokenSigner(privateKey, await exportSPKI(publicKey))
  }

  /** A signer sharing a key pair made elsewhere (supernodes sharing state through Redis). */
  static async fromJwk(jwk: JWK, publicPem: string): Promise<TokenSigner> {
    return new TokenSigner((await importJWK(jwk, ALG)) as CryptoKey, publicPem)
  }

  async exportJwk(): Promise<JWK> {
    return await exportJWK(this.key)
  }

  async sign(g: Grant): Promise<string> {
    return await new SignJWT({ task: g.task, src: g.src, dst: g.dst, pieces: g.pieces })
      .setProtectedHeader({ alg: ALG })
      .setExpirationTime(`${TOKEN_TTL_S}s`)
      .sign(this.key)
  }
}

/** Checks upload tokens against the public keys of the supernodes a peer registered with. */
export class TokenVerifier {
  private readonly keys = new Map<string, CryptoKey>()

  async trust(publicPem: string): Promise<void> {
    if (!this.keys.has(publicPem)) this.keys.set(publicPem, await importSPKI(publicPem, ALG))
  }

  get trusted(): number {
    return this.keys.size
  }

  /** The grant, if some trusted key signed it and it has not expired; undefined otherwise. */
  async verify(token: string): Promise<Grant | undefined> {
    for (const key of this.keys.values()) {
      try {
        const { payload } = await jwtVerify(token, key, { algorithms: [ALG] })
        const p = payload as Partial<Grant>
        if (typeof p.task !== 'string' || typeof p.src !== 'string' || typeof p.dst !== 'string' || !Array.isArray(p.pieces))
          return undefined
        return { task: p.task, src: p.src, dst: p.dst, pieces: p.pieces.filter(n => Number.isInteger(n)) }
      } catch {}
    }
    return undefined
  }
}
