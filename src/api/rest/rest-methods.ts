/**
 * Which rpcs have a REST shape: the one rule the transcoder and the OpenAPI
 * generator share, so the document never lists a route the server lacks.
 */
import { getOption, hasOption } from "@bufbuild/protobuf";
import type { DescField, DescMethod } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.ts";

/** The full name of the message a `response_body` must be for a streamed REST body. */
export const httpBodyTypeName = "google.api.HttpBody";

/**
 * True for a unary rpc with a `google.api.http` rule, and for a server-streaming
 * one whose `response_body` is a `google.api.HttpBody` field (the grpc-gateway
 * convention: the messages' bodies are the chunks of one HTTP response body).
 * Other streaming rpcs (the agent stream) have no REST shape.
 */
export function hasRestShape(method: DescMethod): boolean {
  if (!hasOption(method, http)) return false;
  if (method.methodKind === "unary") return true;
  if (method.methodKind !== "server_streaming") return false;
  return isHttpBodyField(streamedBodyField(method));
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
