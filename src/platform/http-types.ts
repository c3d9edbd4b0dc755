/**
 * The one port's basic HTTP vocabulary: types and one header name, no
 * behaviour. The server (src/server/) serves these requests; the REST
 * transcoder, the raw routes (blobs, the portal) and the request limits read
 * them. It lives at the floor so none of those imports the server, or one
 * another, for a type.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type http2 from "node:http2";

/** The requests the port serves: HTTP/1.1 and HTTP/2 compatibility requests. */
export type RestRequest = IncomingMessage | http2.Http2ServerRequest;
/** The responses the port writes. */
export type RestResponse = ServerResponse | http2.Http2ServerResponse;

/**
 * A raw HTTP route for what must stream or is not an rpc (signed blob upload
 * and download URLs, artifact uploads). `pattern` is tested against the path
 * without the query string.
 */
export interface HttpRoute {
  readonly method: string;
  readonly pattern: RegExp;
  handle(req: RestRequest, res: RestResponse, match: RegExpMatchArray, requestId: string): Promise<void>;
}

/** Request header the server sets to the TCP peer's address (never taken from the client). */
export const peerAddressHeader = "x-gpu-agent-peer-address";
