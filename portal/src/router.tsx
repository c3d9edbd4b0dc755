/**
 * A small client-side router over the History API, under /portal/. Links are
 * real <a href> elements (open in a new tab, keyboard, screen readers), and a
 * click without modifier keys is turned into pushState. After each page change
 * focus moves to the page's <h1> so screen readers announce the new page.
 */
import type { AnchorHTMLAttributes, MouseEvent, ReactNode } from "react";
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";

/** Where the app is mounted (vite.config.ts `base`). */
export const base = "/portal";

interface Location {
  /** Path inside the app, starting with "/" (e.g. "/jobs/123"). */
  readonly path: string;
  readonly search: URLSearchParams;
}

interface RouterValue {
  readonly location: Location;
  navigate(to: string, options?: { replace?: boolean }): void;
}

const RouterContext = createContext<RouterValue | undefined>(undefined);

function readLocation(): Location {
  let path = window.location.pathname.startsWith(base) ? window.location.pathname.slice(base.length) : window.location.pathname;
  if (path === "") path = "/";
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  return { path, search: new URLSearchParams(window.location.search) };
}

/** Provides the location and navigate(). */
export function Router({ children }: { children: ReactNode }) {
  const [location, setLocation] = useState(readLocation);
  useEffect(() => {
    const onPop = () => setLocation(readLocation());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const navigate = useCallback((to: string, options: { replace?: boolean } = {}) => {
    const url = base + (to.startsWith("/") ? to : `/${to}`);
    if (options.replace === true) window.history.replaceState(null, "", url);
    else window.history.pushState(null, "", url);
    setLocation(readLocation());
    window.scrollTo(0, 0);
  }, []);
  const value = useMemo(() => ({ location, navigate }), [location, navigate]);
  return <RouterContext.Provider value={value}>{children}</RouterContext.Provider>;
}

/** The router of the surrounding <Router>. */
export function useRouter(): RouterValue {
  const value = useContext(RouterContext);
  if (value === undefined) throw new Error("useRouter outside <Router>");
  return value;
}

/** Matches `pattern` ("/jobs/:id") against `path`; returns the parameters or undefined. */
export function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const p = pattern.split("/");
  const s = path.split("/");
  if (p.length !== s.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    const want = p[i]!;
    const got = s[i]!;
    if (want.startsWith(":")) {
      if (got === "") return undefined;
      try {
        params[want.slice(1)] = decodeURIComponent(got);
      } catch {
        return undefined;
      }
    } else if (want !== got) return undefined;
  }
  return params;
}

/** An in-app link: `to` is a path inside the app ("/jobs"). */
export function Link({ to, children, ...rest }: { to: string; children: ReactNode } & Omit<AnchorHTMLAttributes<HTMLAnchorElement>, "href">) {
  const { navigate } = useRouter();
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    rest.onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a {...rest} href={base + to} onClick={onClick}>
      {children}
    </a>
  );
}
