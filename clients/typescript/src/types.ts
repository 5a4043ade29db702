// The client's types. The REST answers are the models pivotd's OpenAPI document declares (`shared.models.sessions`
// and `shared.models.monitor` in pivotd), generated into schema.ts by `npm run generate`; only the WebSocket's
// messages, which the document cannot describe, are written here (docs/api.md, "Training sessions").
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

/** Seed 002's session states: queued shows as `created`, cancelled as `stopped`, succeeded as `completed`. */
export type SessionStatus = Schemas["SessionStatus"];

/** The states after which a session changes no more. */
export const FINAL_SESSION_STATES: readonly SessionStatus[] = ["completed", "failed", "stopped"];

/** Request bodies and query parameters, generated from the OpenAPI document. */
export type SessionCreate = components["schemas"]["SessionCreate"];
export type ListSessionsQuery = NonNullable<paths["/api/v1/training/sessions"]["get"]["parameters"]["query"]>;
export type SessionMetricsQuery = NonNullable<
    paths["/api/v1/training/sessions/{session_id}/metrics"]["get"]["parameters"]["query"]
>;
export type MetricHistoryQuery = NonNullable<
    paths["/api/v1/metrics/{session_id}/history"]["get"]["parameters"]["query"]
>;
/** The `{"error": {"code", "message", "details"}}` envelope of families P and C. */
export type ErrorEnvelope = components["schemas"]["StructuredErrorEnvelope"];

/** One epoch's record (seed 002's `Metrics`). */
export interface Metrics {
    epoch: number;
    timestamp: string | null;
    train_loss: number;
    val_loss: number;
    train_accuracy?: number;
    val_accuracy?: number;
    learning_rate?: number;
    [name: string]: unknown;
}

/** A `metrics` message of `/api/v1/ws/training/{id}`: one epoch's record, `loss` = `train_loss`. */
export interface MetricsMessage extends Metrics {
    type: "metrics";
    session_id: string;
    loss: number;
}

/** A `status` message of `/api/v1/ws/training/{id}`: the session's state changed (the first one is its state then). */
export interface StatusMessage {
    type: "status";
    session_id: string;
    status: SessionStatus;
    error: string | null;
}

/** Answers of the REST routes, generated from the OpenAPI document. */
export type SessionCreated = Schemas["SessionCreated"];
export type SessionStarted = Schemas["SessionStarted"];
export type SessionStopped = Schemas["SessionStopped"];
/** `GET /api/v1/training/sessions/{id}` (seed 002's `TrainingSession`, plus progress and the latest metrics). */
export type TrainingSession = Schemas["SessionPublic"];
export type SessionList = Schemas["SessionList"];
/** `metrics` as the hand-written `Metrics`: the document says only "one field per metric" (`[name]: unknown`). */
export type SessionMetrics = Omit<Schemas["SessionMetrics"], "metrics"> & { metrics: Metrics[] };
export type MetricHistory = Schemas["MetricHistory"];
export type Health = Schemas["HealthDetail"];
