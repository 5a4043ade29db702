// The shapes of seed 002's answers, as pivotd sends them (docs/api.md, "Training sessions"). They are used only
// where the daemon's OpenAPI document does not describe a response yet (its schema is `{}`, `unknown` in
// schema.ts): once a route declares a response model, `npm run generate` makes its generated type the one the
// client returns, with no change here.
import type { components, paths } from "./schema.js";

/** Seed 002's session states: queued shows as `created`, cancelled as `stopped`, succeeded as `completed`. */
export type SessionStatus = "created" | "running" | "stopped" | "completed" | "failed";

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

export interface SessionCreatedFallback {
    session_id: string;
    session_name: string | null;
    status: SessionStatus;
    created_at: string;
    config: Record<string, unknown>;
    tags: string[];
}

export interface SessionStartedFallback {
    session_id: string;
    status: SessionStatus;
    started_at: string | null;
}

export interface SessionStoppedFallback {
    session_id: string;
    status: SessionStatus;
    stopped_at: string | null;
}

/** `GET /api/v1/training/sessions/{id}` (seed 002's `TrainingSession`, plus progress and the latest metrics). */
export interface TrainingSessionFallback {
    session_id: string;
    session_name: string | null;
    status: SessionStatus;
    config: Record<string, unknown>;
    created_at: string;
    started_at: string | null;
    completed_at: string | null;
    current_epoch: number;
    total_epochs: number;
    progress: number;
    latest_metrics: Partial<Record<"train_loss" | "val_loss" | "train_accuracy" | "val_accuracy" | "learning_rate", number>>;
    tags: string[];
    model_id: string | null;
    error: string | null;
}

export interface SessionListFallback {
    sessions: Pick<
        TrainingSessionFallback,
        "session_id" | "session_name" | "status" | "created_at" | "current_epoch" | "total_epochs" | "tags"
    >[];
    total: number;
    limit: number;
    offset: number;
}

export interface SessionMetricsFallback {
    session_id: string;
    metrics: Metrics[];
}

export interface MetricHistoryFallback {
    metric_name: string;
    values: number[];
    epochs: number[];
    timestamps: (string | null)[];
}

export interface HealthFallback {
    status: "healthy" | "degraded" | "unhealthy";
    timestamp: string;
    uptime_seconds: number;
    system: Record<string, number | null>;
    components: Record<string, string>;
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

type JsonContent<R> = R extends { content: { "application/json": infer Body } } ? Body : unknown;
type SuccessBody<Operation> = Operation extends { responses: infer R }
    ? R extends { 200: infer Answer }
        ? JsonContent<Answer>
        : R extends { 201: infer Answer }
          ? JsonContent<Answer>
          : unknown
    : unknown;
type Method = "get" | "post" | "put" | "patch" | "delete";

/** What `method path` answers according to the OpenAPI document, or `Fallback` where the document does not say. */
export type Answer<Path extends keyof paths, M extends Method, Fallback> =
    unknown extends SuccessBody<paths[Path][M]> ? Fallback : SuccessBody<paths[Path][M]>;

export type SessionCreated = Answer<"/api/v1/training/sessions", "post", SessionCreatedFallback>;
export type SessionStarted = Answer<"/api/v1/training/sessions/{session_id}/start", "post", SessionStartedFallback>;
export type SessionStopped = Answer<"/api/v1/training/sessions/{session_id}/stop", "post", SessionStoppedFallback>;
export type TrainingSession = Answer<"/api/v1/training/sessions/{session_id}", "get", TrainingSessionFallback>;
export type SessionList = Answer<"/api/v1/training/sessions", "get", SessionListFallback>;
export type SessionMetrics = Answer<"/api/v1/training/sessions/{session_id}/metrics", "get", SessionMetricsFallback>;
export type MetricHistory = Answer<"/api/v1/metrics/{session_id}/history", "get", MetricHistoryFallback>;
export type Health = Answer<"/api/v1/health", "get", HealthFallback>;
