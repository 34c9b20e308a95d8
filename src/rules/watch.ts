import { type FSWatcher, realpathSync, statSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface RulePathWatcherOptions {
  /** Quiet time after the last change before onChange runs (a ConfigMap update is a burst). */
  debounceMs: number;
  /** Called once per burst of changes. */
  onChange: () => void;
  /** A directory could not be watched (it is retried on the next change or setPaths). */
  onError?: (err: Error, dir: string) => void;
}

/** A running watcher of rule files and directories. */
export interface RulePathWatcher {
  /** Watches a new set of paths (after a config reload changed `rules.paths`). */
  setPaths(paths: readonly string[]): void;
  /** The directories currently watched (for tests and diagnostics). */
  watched(): string[];
  close(): void;
}

type NameFilter = (name: string | null) => boolean;

/**
 * Watches rule paths and calls onChange (debounced) when their contents change, surviving the
 * way Kubernetes updates a mounted ConfigMap: files are symlinks into a `..data` symlink that is
 * replaced atomically (`..data_tmp` renamed over `..data`), and the old timestamped directory is
 * deleted. Watching a file or the resolved directory alone would follow the deleted inode and go
 * silent, so for each path this watches its parent directory (which sees `..data` swaps and the
 * path itself being replaced) and the directory the path resolves to now; after every burst it
 * re-resolves the paths and moves its watches to where they point.
 */
export function watchRulePaths(paths: readonly string[], opts: RulePathWatcherOptions): RulePathWatcher {
  const watchers = new Map<string, FSWatcher>();
  const filters = new Map<string, NameFilter[]>();
  let current: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (closed) return;
      resync();
      opts.onChange();
    }, opts.debounceMs);
    timer.unref?.();
  };

  const desired = (): Map<string, NameFilter[]> => {
    const out = new Map<string, NameFilter[]>();
    const add = (dir: string, f: NameFilter) => {
      const list = out.get(dir) ?? [];
      list.push(f);
      out.set(dir, list);
    };
    for (const p of current) {
      const name = basename(p);
      // The parent sees the path itself replaced and Kubernetes' `..data` swaps next to it.
      add(dirname(p), (n) => n === null || n === name || n.startsWith('..'));
      let real: string | undefined;
      try {
        real = realpathSync(p);
      } catch {
        real = undefined; // not there (yet): the parent watch notices when it appears
      }
      if (real) {
        let isDir = false;
        try {
          isDir = statSync(real).isDirectory();
        } catch {
          isDir = false;
        }
        if (isDir) add(real, (n) => n === null || /\.ya?ml$/i.test(n) || n.startsWith('..'));
        else if (real !== p) add(dirname(real), (n) => n === null || n === basename(real));
      }
    }
    return out;
  };

  const resync = () => {
    const want = desired();
    for (const [dir, w] of watchers) {
      if (!want.has(dir)) {
        w.close();
        watchers.delete(dir);
      }
    }
    filters.clear();
    for (const [dir, fs] of want) {
      filters.set(dir, fs);
      if (watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          const name = filename === null ? null : String(filename);
          if ((filters.get(dir) ?? []).some((f) => f(name))) schedule();
        });
        w.on('error', (err) => {
          // The directory went away (an old ConfigMap generation): drop the watch and re-resolve.
          w.close();
          if (watchers.get(dir) === w) watchers.delete(dir);
          opts.onError?.(err, dir);
          schedule();
        });
        watchers.set(dir, w);
      } catch (err) {
        opts.onError?.(err as Error, dir);
      }
    }
  };

  const api: RulePathWatcher = {
    setPaths(next) {
      current = next.map((p) => resolve(p));
      resync();
    },
    watched: () => [...watchers.keys()].sort(),
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
  api.setPaths(paths);
  return api;
}
