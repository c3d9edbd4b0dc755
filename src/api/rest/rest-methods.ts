/**
 * Which rpcs have a REST shape: the one rule the transcoder and the OpenAPI
 * generator share, so the document never lists a route the server lacks.
 */
import { ScalarType, getOption, hasOption } from "@bufbuild/protobuf";
import type { DescField, DescMethod } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.ts";

/** The full name of the message a `response_body` must be for a streamed REST body. */
export const httpBodyTypeName = "google.api.HttpBody";

/**
 * True for a unary rpc with a `google.api.http` rule, and for a server-streaming
 * one that is either an HttpBody stream (its `response_body` is a
 * `google.api.HttpBody` field: the grpc-gateway convention, the messages' bodies
 * are the chunks of one HTTP response body) or an event stream
 * ({@link isEventStream}). Other streaming rpcs (the agent stream) have no REST
 * shape.
 */
export function hasRestShape(method: DescMethod): boolean {
  if (!hasOption(method, http)) return false;
  if (method.methodKind === "unary") return true;
  if (method.methodKind !== "server_streaming") return false;
  return isHttpBodyField(streamedBodyField(method)) || isEventStream(method);
}

/** The request field that an event stream's `Last-Event-ID` header fills when the query leaves it unset. */
export const resumeFieldName = "after_event_id";

/**
 * True for a server-streaming rpc served over REST as Server-Sent Events
 * (`text/event-stream`): its rule names no `response_body`, and its response
 * message has an `id` (int64, uint64 or string) and a `type` (string) field.
 * Each message is one event: `id:` its id, `event:` its type, `data:` the
 * message as JSON; a message whose type is "heartbeat" is written as an SSE
 * comment instead (it keeps proxies from closing an idle stream and moves no
 * client cursor). A `Last-Event-ID` request header (what EventSource sends when it
 * reconnects) fills the request's {@link resumeFieldName} field when the query
 * does not. A stream that ends before its first message answers 204 No Content,
 * which tells EventSource not to reconnect.
 */
export function isEventStream(method: DescMethod): boolean {
  if (method.methodKind !== "server_streaming" || !hasOption(method, http)) return false;
  if (getOption(method, http).responseBody !== "") return false;
  const id = method.output.fields.find((f) => f.name === "id");
  const type = method.output.fields.find((f) => f.name === "type");
  const idKinds: readonly ScalarType[] = [ScalarType.INT64, ScalarType.UINT64, ScalarType.STRING];
  return id?.fieldKind === "scalar" && idKinds.includes(id.scalar) && type?.fieldKind === "scalar" && type.scalar === ScalarType.STRING;
}

/** The output field a method's rule names as `response_body`, if any. */
function streamedBodyField(method: DescMethod): DescField | undefined {
  const name = getOption(method, http).responseBody;
  return name === "" ? undefined : method.output.fields.find((f) => f.name === name);
}

/** True when the field is a singular `google.api.HttpBody` message field. */
export function isHttpBodyField(field: DescField | undefined): boolean {
  return field !== undefined && field.fieldKind === "message" && field.message.typeName === httpBodyTypeName;
}
