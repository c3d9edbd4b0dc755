/** Building blocks shared by the pages. */
import type { ReactNode } from "react";
import { useEffect, useId, useRef, useState } from "react";
import { describeError } from "../errors.ts";
import { formatPercent, humanize } from "../format.ts";

/** A page: its <h1> (focused when the page opens, for screen readers), optional actions, content. */
export function Page({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · GPU-Agent`;
    heading.current?.focus({ preventScroll: true });
  }, [title]);
  return (
    <>
      <div className="page-head">
        <h1 ref={heading} tabIndex={-1}>
          {title}
        </h1>
        {actions === undefined ? null : <div className="page-actions">{actions}</div>}
      </div>
      {children}
    </>
  );
}

/** An API error in words, with the seed code and request id for support. */
export function ErrorBox({ error, overrides, onDismiss }: { error: unknown; overrides?: Partial<Record<string, string>>; onDismiss?: () => void }) {
  if (error === undefined || error === null) return null;
  const d = describeError(error, overrides);
  return (
    <div className="error-box" role="alert">
      <p className="error-text">{d.text}</p>
      {d.detail === "" ? null : <p className="error-detail">{d.detail}</p>}
      <p className="error-code">
        Error code <code>{d.code}</code>
        {d.requestId === "" ? null : (
          <>
            {" "}
            · request id <code>{d.requestId}</code>
          </>
        )}
      </p>
      {onDismiss === undefined ? null : (
        <button type="button" className="link-button" onClick={onDismiss}>
          Dismiss
        </button>
      )}
    </div>
  );
}

/** An accessible progress bar (role=progressbar with its value), 0..1. */
export function ProgressBar({ label, value, text, testId }: { label: string; value: number; text?: string; testId?: string }) {
  const pct = Math.round(Math.max(0, Math.min(1, value)) * 1000) / 10;
  return (
    <div className="progress">
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct}
        aria-valuetext={text ?? formatPercent(value)}
        data-testid={testId}
      >
        <div className="progress-fill" style={{ width: `${pct}%` }} />
      </div>
      <span className="progress-text">{text ?? formatPercent(value)}</span>
    </div>
  );
}

/** A status in words with a colour that only repeats the words. */
export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span className={`badge badge-${status}`} data-testid={testId}>
      {humanize(status)}
    </span>
  );
}

/** Copies `value`; says so in a live region. Works without the async clipboard (plain-HTTP origins). */
export function CopyButton({ value, label = "Copy" }: { value: string; label?: string }) {
  const [copied, setCopied] = useState<"" | "ok" | "failed">("");
  const copy = async () => {
    try {
      if (navigator.clipboard !== undefined && window.isSecureContext) await navigator.clipboard.writeText(value);
      else fallbackCopy(value);
      setCopied("ok");
    } catch {
      try {
        fallbackCopy(value);
        setCopied("ok");
      } catch {
        setCopied("failed");
      }
    }
  };
  return (
    <>
      <button type="button" onClick={() => void copy()}>
        {label}
      </button>
      <span className="copy-status" role="status">
        {copied === "ok" ? "Copied to the clipboard." : copied === "failed" ? "Copying failed: select the text and copy it yourself." : ""}
      </span>
    </>
  );
}

function fallbackCopy(value: string): void {
  const area = document.createElement("textarea");
  area.value = value;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

/** A secret shown exactly once, with a copy button. */
export function SecretOnce({ title, secret, note, onDone }: { title: string; secret: string; note: string; onDone: () => void }) {
  const id = useId();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <div className="secret-once" ref={ref} tabIndex={-1} role="region" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{title}</h2>
      <p>{note}</p>
      <div className="secret-row">
        <label htmlFor={`${id}-value`} className="visually-hidden">
          {title}
        </label>
        <input id={`${id}-value`} className="secret-value" readOnly value={secret} onFocus={(e) => e.currentTarget.select()} data-testid="secret-value" />
        <CopyButton value={secret} />
      </div>
      <button type="button" onClick={onDone}>
        I have stored it
      </button>
    </div>
  );
}

/** Forward-only paging with a back stack of cursors. */
export function Pager({ hasMore, canGoBack, onNext, onBack, busy }: { hasMore: boolean; canGoBack: boolean; onNext: () => void; onBack: () => void; busy?: boolean }) {
  if (!hasMore && !canGoBack) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" onClick={onBack} disabled={!canGoBack || busy === true}>
        ← Previous page
      </button>
      <button type="button" onClick={onNext} disabled={!hasMore || busy === true}>
        Next page →
      </button>
    </nav>
  );
}

/** Loading text announced politely. */
export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status">
      Loading {what}…
    </p>
  );
}

/** Text for an empty list. */
export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/** A group of checkboxes with a legend; `selected` holds the checked values. */
export function CheckboxGroup({ legend, name, options, selected, onChange }: {
  legend: string;
  name: string;
  options: ReadonlyArray<{ value: string; label: ReactNode }>;
  selected: readonly string[];
  onChange: (selected: string[]) => void;
}) {
  return (
    <fieldset>
      <legend>{legend}</legend>
      {options.map((o) => (
        <div className="check" key={o.value}>
          <input
            id={`${name}-${o.value}`}
            type="checkbox"
            checked={selected.includes(o.value)}
            onChange={(e) => onChange(e.target.checked ? [...selected, o.value] : selected.filter((x) => x !== o.value))}
          />
          <label htmlFor={`${name}-${o.value}`}>{o.label}</label>
        </div>
      ))}
    </fieldset>
  );
}

/** A loaded list: its error, "Loading…", the empty text, or `children` with the rows. */
export function ListBody<T>({ state, what, empty, children }: {
  state: { data: { data: T[] } | undefined; error: unknown };
  what: string;
  empty: ReactNode;
  children: (rows: T[]) => ReactNode;
}) {
  return (
    <>
      <ErrorBox error={state.error} />
      {state.data === undefined ? (state.error === undefined ? <Loading what={what} /> : null) : state.data.data.length === 0 ? <Empty>{empty}</Empty> : children(state.data.data)}
    </>
  );
}
