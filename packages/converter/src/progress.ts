/** A one-line progress display on a TTY; silent otherwise, so logs and pipes stay clean. */
export class Progress {
  private last = 0
  private readonly start = Date.now()
  private readonly enabled: boolean

  constructor(
    private readonly label: string,
    private readonly total?: number,
    private readonly stream: NodeJS.WriteStream = process.stderr
  ) {
    this.enabled = stream.isTTY === true && process.env.CI === undefined
  }

  update(bytes: number, what = ''): void {
    if (!this.enabled) return
    const now = Date.now()
    if (now - this.last < 200) return
    this.last = now
    const mb = bytes / 1e6
    const rate = mb / Math.max(0.001, (now - this.start) / 1000)
    const pct = this.total !== undefined && this.total > 0 ? ` ${Math.min(100, (bytes / this.total) * 100).toFixed(0)}%` : ''
    this.stream.write(`\r\x1b[K${this.label}${what}${pct} ${mb.toFixed(1)} MB ${rate.toFixed(0)} MB/s`)
  }

  done(): void {
    if (this.enabled) this.stream.write('\r\x1b[K')
  }
}
