import { open, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { checkBlobId, type BlobBackend } from './backend.js'
import { StorageError } from './errors.js'

/** Blobs in a directory (a local disk or a NAS mount), named by id, read with positional reads. */
export class LocalFsBackend implements BlobBackend {
  readonly name = 'localfs'
  private readonly handles = new Map<string, Promise<FileHandle>>()

  constructor(readonly dir: string) {}

  async read(blobId: string, offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length)
    await this.readInto(blobId, offset, buf)
    return buf
  }

  async readInto(blobId: string, offset: number, dst: Buffer): Promise<void> {
    const fh = await this.handle(blobId)
    const length = dst.length
    let got = 0
    while (got < length) {
      const { bytesRead } = await fh.read(dst, got, length - got, offset + got).catch((err: Error) => {
        throw new StorageError('ERR_BACKEND_IO', `localfs ${this.dir}: reading blob ${blobId}: ${err.message}`, {
          cause: err,
          backend: this.name
        })
      })
      if (bytesRead === 0)
        throw new StorageError('ERR_BACKEND_SHORT_READ', `localfs ${this.dir}: blob ${blobId} ends before byte ${offset + length}`, {
          backend: this.name
        })
      got += bytesRead
    }
  }

  async size(blobId: string): Promise<number> {
    const st = await stat(join(this.dir, checkBlobId(blobId))).catch((err: NodeJS.ErrnoException) => {
      throw this.openError(blobId, err)
    })
    return st.size
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()]
    this.handles.clear()
    await Promise.all(
      all.map(
        async h =>
          await h.then(
            async fh => await fh.close(),
            () => {}
          )
      )
    )
  }

  private async handle(blobId: string): Promise<FileHandle> {
    let h = this.handles.get(blobId)
    if (h === undefined) {
      h = open(join(this.dir, checkBlobId(blobId)), 'r').catch((err: NodeJS.ErrnoException) => {
        this.handles.delete(blobId) // a blob that appears later can still be read
        throw this.openError(blobId, err)
      })
      this.handles.set(blobId, h)
    }
    return await h
  }

  private openError(blobId: string, err: NodeJS.ErrnoException): StorageError {
    if (err.code === 'ENOENT')
      return new StorageError('ERR_BLOB_NOT_FOUND', `localfs ${this.dir}: blob ${blobId} not found`, { backend: this.name })
    return new StorageError('ERR_BACKEND_IO', `localfs ${this.dir}: blob ${blobId}: ${err.message}`, { cause: err, backend: this.name })
  }
}
