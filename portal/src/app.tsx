/** The shell (header, navigation, main) and the page for the current path. */
import { useEffect, useState } from "react";
import { formatNumber } from "./format.ts";
import { ApiKeysPage } from "./pages/api-keys.tsx";
import { JobPage } from "./pages/job.tsx";
import { JobsPage } from "./pages/jobs.tsx";
import { NewJobPage } from "./pages/new-job.tsx";
import { NotFoundPage } from "./pages/not-found.tsx";
import { SignInPage } from "./pages/sign-in.tsx";
import { UploadsPage } from "./pages/uploads.tsx";
import { UsagePage } from "./pages/usage.tsx";
import { WebhooksPage } from "./pages/webhooks.tsx";
import { Link, matchPath, useRouter } from "./router.tsx";
import { useSession } from "./session.tsx";

const nav: ReadonlyArray<{ to: string; label: string }> = [
  { to: "/jobs", label: "Training jobs" },
  { to: "/datasets", label: "Datasets" },
  { to: "/packages", label: "Training packages" },
  { to: "/usage", label: "Usage" },
  { to: "/api-keys", label: "API keys" },
  { to: "/webhooks", label: "Webhooks" },
];

/** The app. */
export function App() {
  const session = useSession();
  const { location, navigate } = useRouter();
  const onSignIn = location.path === "/sign-in";

  useEffect(() => {
    if (session.status === "signed-out" && !onSignIn) {
      const next = location.path + (location.search.size > 0 ? `?${location.search.toString()}` : "");
      navigate(`/sign-in${next === "/" ? "" : `?next=${encodeURIComponent(next)}`}`, { replace: true });
    }
  }, [session.status, onSignIn, location, navigate]);

  if (session.status === "loading") {
    return (
      <p className="boot" role="status">
        Loading the portal…
      </p>
    );
  }
  if (session.status === "signed-out" || onSignIn) return <SignInPage />;
  return <Shell />;
}

function Shell() {
  const session = useSession();
  const { location } = useRouter();
  const [menuOpen, setMenuOpen] = useState(false);
  const [signOutError, setSignOutError] = useState(false);
  useEffect(() => {
    setMenuOpen(false);
    // The balance changes as jobs run: re-read it on every page change.
    session.refresh().catch(() => undefined);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [location.path]);
  const current = (to: string) => location.path === to || location.path.startsWith(`${to}/`);
  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/jobs" className="brand">
          GPU-Agent
        </Link>
        <button type="button" className="menu-button" aria-expanded={menuOpen} aria-controls="main-nav" onClick={() => setMenuOpen((o) => !o)}>
          Menu
        </button>
        <div className="account">
          <span className="account-email">{session.customer?.email}</span>
          <span className="account-credits" data-testid="credits">
            {formatNumber(session.customer?.credits_balance ?? "0")} credits
          </span>
          <button
            type="button"
            onClick={() => {
              setSignOutError(false);
              session.signOut().catch(() => setSignOutError(true));
            }}
          >
            Sign out
          </button>
          {signOutError ? <span role="alert">Signing out on the server failed; this page forgot the session anyway.</span> : null}
        </div>
      </header>
      <nav id="main-nav" className={`sidenav${menuOpen ? " open" : ""}`} aria-label="Main">
        <ul>
          {nav.map((item) => (
            <li key={item.to}>
              <Link to={item.to} aria-current={current(item.to) ? "page" : undefined}>
                {item.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        <CurrentPage />
      </main>
    </div>
  );
}

function CurrentPage() {
  const { location, navigate } = useRouter();
  const path = location.path;
  useEffect(() => {
    if (path === "/") navigate("/jobs", { replace: true });
  }, [path, navigate]);
  if (path === "/" || path === "/jobs") return <JobsPage />;
  if (path === "/jobs/new") return <NewJobPage />;
  const job = matchPath("/jobs/:id", path);
  if (job !== undefined) return <JobPage key={job["id"]} id={job["id"]!} />;
  if (path === "/datasets") return <UploadsPage key="datasets" kind="datasets" />;
  if (path === "/packages") return <UploadsPage key="packages" kind="training-packages" />;
  if (path === "/api-keys") return <ApiKeysPage />;
  if (path === "/usage") return <UsagePage />;
  if (path === "/webhooks") return <WebhooksPage />;
  return <NotFoundPage />;
}
