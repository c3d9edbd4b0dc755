/** Small data-loading hooks. */
import { useCallback, useEffect, useRef, useState } from "react";
import { api } from "./api/client.ts";
import type { List } from "./api/types.ts";

/** The state of one load. */
export interface Loaded<T> {
  readonly data: T | undefined;
  readonly error: unknown;
  readonly loading: boolean;
  /** Loads again (keeps showing the old data meanwhile). */
  reload(): Promise<void>;
}

/** Runs `load` when `deps` change; stale answers of earlier runs are dropped. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const run = useCallback(async () => {
    const mine = ++generation.current;
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await loadRef.current(controller.signal);
      if (mine === generation.current) setState({ data, error: undefined, loading: false });
    } catch (error) {
      if (mine === generation.current && (error as { name?: string }).name !== "AbortError") setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, []);
  useEffect(() => {
    void run();
    return () => {
      generation.current++;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return { ...state, reload: run };
}

/** Calls `tick` every `ms` while `active`. */
export function useInterval(tick: () => void, ms: number, active: boolean): void {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    if (!active) return;
    const id = setInterval(() => ref.current(), ms);
    return () => clearInterval(id);
  }, [ms, active]);
}

/** Runs an action, tracking its busy state and error for the button that started it. */
export function useAction<A extends unknown[], R>(action: (...args: A) => Promise<R>): {
  run: (...args: A) => Promise<R | undefined>;
  busy: boolean;
  error: unknown;
  clearError: () => void;
} {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const ref = useRef(action);
  ref.current = action;
  const run = useCallback(async (...args: A) => {
    setBusy(true);
    setError(undefined);
    try {
      return await ref.current(...args);
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { run, busy, error, clearError: () => setError(undefined) };
}

/** Cursor paging state: the current cursor and the ones before it. */
export function useCursorPager(): { cursor: string; next: (c: string) => void; back: () => void; reset: () => void; canGoBack: boolean } {
  const [stack, setStack] = useState<string[]>([""]);
  const cursor = stack.at(-1) ?? "";
  return {
    cursor,
    next: (c) => setStack((s) => [...s, c]),
    back: () => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)),
    reset: () => setStack([""]),
    canGoBack: stack.length > 1,
  };
}

/**
 * A paged list from the API: `url(cursor)` names the page; returns the load
 * state, the pager (reset it when a filter changes) and the props of <Pager>.
 */
export function usePagedList<T>(url: (cursor: string) => string, deps: readonly unknown[]) {
  const pager = useCursorPager();
  const list = useLoad((signal) => api<List<T>>("GET", url(pager.cursor), { signal }), [pager.cursor, ...deps]);
  const pagerProps = {
    hasMore: list.data?.page.has_more ?? false,
    canGoBack: pager.canGoBack,
    onNext: () => pager.next(list.data?.page.next_cursor ?? ""),
    onBack: pager.back,
    busy: list.loading,
  };
  return { list, pager, pagerProps };
}
