/** Long-polls per task: a request with nothing to schedule waits here until something changes, or its time is up. */
export class TaskWaiters {
  private readonly byTask = new Map<string, Set<() => void>>()

  async wait(taskId: string, ms: number, signal?: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      let set = this.byTask.get(taskId)
      if (set === undefined) this.byTask.set(taskId, (set = new Set()))
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        set.delete(done)
        if (set.size === 0 && this.byTask.get(taskId) === set) this.byTask.delete(taskId)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal?.addEventListener('abort', done)
      set.add(done)
    })
  }

  notify(taskId: string): void {
    const set = this.byTask.get(taskId)
    if (set !== undefined) for (const w of [...set]) w()
  }

  wakeAll(): void {
    for (const id of [...this.byTask.keys()]) this.notify(id)
  }
}
