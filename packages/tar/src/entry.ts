export type EntryType = 'file' | 'link' | 'symlink' | 'dir' | 'char' | 'block' | 'fifo'

/** One entry of a layer, whatever it was read from (a tar or a directory). */
export interface LayerEntry {
  /** Raw path bytes as stored; normalised by the tree builder. */
  path: Buffer
  type: EntryType
  /** Permission bits, including setuid, setgid and sticky. */
  mode: number
  uid: number
  gid: number
  size: number
  mtimeSec: number
  mtimeNsec: number
  /** Symlink target, or the hard link's target path. */
  linkname: Buffer
  devMajor: number
  devMinor: number
  xattrs: Map<string, Buffer>
  /** Reads the next n bytes of a regular file's content, in order. */
  readInto: (dst: Uint8Array, off: number, n: number) => Promise<void>
}

/** Where entries come from; `where` names the input in error messages. */
export interface EntrySource {
  readonly where: string
  entries: () => AsyncGenerator<LayerEntry>
}
