/**
 * The signed-in customer. The session token lives only in the HttpOnly cookie;
 * the page holds the customer and the CSRF token (from /portal/session).
 */
import type { ReactNode } from "react";
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { api, PortalApiError, setCsrfToken, setSignedOutHandler } from "./api/client.ts";
import type { Customer, PortalSession } from "./api/types.ts";

interface SessionValue {
  readonly status: "loading" | "signed-in" | "signed-out";
  readonly customer: Customer | undefined;
  /** Why the page shows sign-in ("" on a first visit). */
  readonly notice: string;
  signIn(email: string, password: string): Promise<void>;
  signOut(): Promise<void>;
  /** Re-reads the customer (credit balance). */
  refresh(): Promise<void>;
}

const SessionContext = createContext<SessionValue | undefined>(undefined);

/** Loads the session once and provides it. */
export function SessionProvider({ children }: { children: ReactNode }) {
  const [status, setStatus] = useState<SessionValue["status"]>("loading");
  const [customer, setCustomer] = useState<Customer | undefined>(undefined);
  const [notice, setNotice] = useState("");

  const accept = useCallback((session: PortalSession) => {
    setCsrfToken(session.csrf_token);
    setCustomer(session.customer);
    setNotice("");
    setStatus("signed-in");
  }, []);

  const signedOut = useCallback((why: string) => {
    setCsrfToken("");
    setCustomer(undefined);
    setNotice(why);
    setStatus("signed-out");
  }, []);

  useEffect(() => {
    setSignedOutHandler(() => signedOut("Your session has ended. Please sign in again."));
    api<PortalSession>("GET", "/portal/session").then(accept, (error: unknown) => {
      signedOut(error instanceof PortalApiError && error.code !== "CUSTOMER_AUTH_REQUIRED" ? "The server could not check your session." : "");
    });
  }, [accept, signedOut]);

  const value = useMemo<SessionValue>(
    () => ({
      status,
      customer,
      notice,
      async signIn(email, password) {
        accept(await api<PortalSession>("POST", "/portal/session", { body: { email, password } }));
      },
      async signOut() {
        try {
          await api<void>("DELETE", "/portal/session");
        } finally {
          signedOut("You are signed out.");
        }
      },
      async refresh() {
        const me = await api<{ customer: Customer }>("GET", "/api/v1/customer/auth/me");
        setCustomer(me.customer);
      },
    }),
    [status, customer, notice, accept, signedOut],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** The session of the surrounding provider. */
export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (value === undefined) throw new Error("useSession outside <SessionProvider>");
  return value;
}
