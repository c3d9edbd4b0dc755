/**
 * Everything the control plane serves for the web portal (the app itself is
 * in portal/ at the repository root, built into portal/dist): the session
 * routes first (/portal/session), then the static files and deep links.
 */
import { join } from "node:path";
import type { ServiceImpl } from "@connectrpc/connect";
import type { CustomerService } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { HttpRoute } from "../platform/http-types.ts";
import { createPortalSessionRoutes } from "./session-routes.ts";
import type { PortalSessionDeps } from "./session-routes.ts";
import { createPortalStaticRoutes } from "./static-files.ts";

/** Where `npm run build:portal` writes the bundle. */
export const defaultPortalDir = join(import.meta.dirname, "..", "..", "portal", "dist");

/** Options of {@link createPortalRoutes}. */
export interface PortalRoutesOptions {
  readonly deps: PortalSessionDeps;
  /** The CustomerService implementation the API serves (sign-in runs its Login). */
  readonly handlers: Partial<ServiceImpl<typeof CustomerService>>;
  /** The port speaks TLS. */
  readonly tls: boolean;
  /** The built bundle; default portal/dist of this checkout. */
  readonly dir?: string;
}

/** The portal's routes, for the server's `httpRoutes`. */
export function createPortalRoutes(options: PortalRoutesOptions): HttpRoute[] {
  const { deps } = options;
  const { login, getMe } = options.handlers;
  if (login === undefined || getMe === undefined) throw new Error("the portal needs CustomerService's Login and GetMe");
  return [
    ...createPortalSessionRoutes({
      deps,
      handlers: { login, getMe },
      // Behind a TLS-terminating proxy the port is cleartext but the public URL says https.
      secure: () => options.tls || deps.config.publicUrl.startsWith("https:"),
    }),
    ...createPortalStaticRoutes({ dir: options.dir ?? defaultPortalDir }),
  ];
}
