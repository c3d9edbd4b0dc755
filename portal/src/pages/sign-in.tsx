/** Sign in with e-mail and password; the session goes into an HttpOnly cookie. */
import type { FormEvent } from "react";
import { useEffect, useState } from "react";
import { ErrorBox, Page } from "../components/ui.tsx";
import { useAction } from "../hooks.ts";
import { useRouter } from "../router.tsx";
import { useSession } from "../session.tsx";

/** The sign-in page. */
export function SignInPage() {
  const session = useSession();
  const { location, navigate } = useRouter();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const next = location.search.get("next") ?? "";
  // Only paths inside the app: a crafted ?next= must not send anyone elsewhere.
  const target = /^\/[A-Za-z0-9/_-]*(\?[^#]*)?$/.test(next) && !next.startsWith("//") && next !== "/sign-in" ? next : "/jobs";
  const action = useAction(async () => {
    await session.signIn(email.trim(), password);
  });

  useEffect(() => {
    if (session.status === "signed-in") navigate(target, { replace: true });
  }, [session.status, target, navigate]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    void action.run();
  };

  return (
    <div className="signin-wrap">
      <main id="main" className="signin" tabIndex={-1}>
        <Page title="Sign in to GPU-Agent">
          {session.notice === "" ? null : (
            <p className="notice" role="status">
              {session.notice}
            </p>
          )}
          <form onSubmit={submit} className="form" noValidate={false}>
            <div className="field">
              <label htmlFor="email">E-mail</label>
              <input id="email" name="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
            </div>
            <div className="field">
              <label htmlFor="password">Password</label>
              <input id="password" name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
            </div>
            <ErrorBox error={action.error} overrides={{ CUSTOMER_AUTH_REQUIRED: "The e-mail or the password is wrong." }} />
            <button type="submit" className="primary" disabled={action.busy}>
              {action.busy ? "Signing in…" : "Sign in"}
            </button>
          </form>
          <p className="hint">Your account is created by your GPU-Agent operator. Programs use API keys instead of this page (see the API keys page once signed in).</p>
        </Page>
      </main>
    </div>
  );
}
