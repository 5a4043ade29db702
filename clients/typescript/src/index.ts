// PIVOTClient: seed 002's TypeScript client for pivotd's training-session API (prefix /api/v1), for browsers and
// Node 20+. HTTP goes through `fetch`; live metrics through the WebSocket `/api/v1/ws/training/{id}`, with the
// global `WebSocket` where there is one (browsers, Node 22+) and the `ws` package otherwise (Node 20), loaded
// only then.
import {
    FINAL_SESSION_STATES,
    type ErrorEnvelope,
    type Health,
    type ListSessionsQuery,
    type MetricHistory,
    type MetricHistoryQuery,
    type MetricsMessage,
    type SessionCreate,
    type SessionCreated,
    type SessionList,
    type SessionMetrics,
    type SessionMetricsQuery,
    type SessionStarted,
    type SessionStopped,
    type StatusMessage,
    type TrainingSession,
} from "./types.js";

export * from "./types.js";
export type { components, operations, paths } from "./schema.js";

/** The daemon answered with an error: its HTTP status and the code, message and details of its error envelope. */
export class PIVOTError extends Error {
    override readonly name = "PIVOTError";

    constructor(
        /** The HTTP status (404, 401, 422, 429, ...). */
        readonly status: number,
        /** pivotd's error code: `not_found`, `unauthorized`, `forbidden`, `validation_error`, `conflict`, ... */
        readonly code: string,
        message: string,
        /** The envelope's `details` (e.g. `{"field": "session_id"}`), if any. */
        readonly details: unknown,
        /** The whole parsed answer, whichever route family's envelope it is in. */
        readonly body: unknown,
    ) {
        super(message);
    }

    /** The `{"error": {"code", "message", "details"}}` envelope, when the answer is one (families P and C). */
    get envelope(): ErrorEnvelope | undefined {
        const error = isObject(this.body) ? this.body.error : undefined;
        return isObject(error) && typeof error.code === "string" ? (this.body as ErrorEnvelope) : undefined;
    }
}

/** A metrics stream ended without the daemon saying why: the connection dropped, or the daemon shut down (1001). */
export class PIVOTConnectionError extends Error {
    override readonly name = "PIVOTConnectionError";

    constructor(
        message: string,
        /** The WebSocket close code (1006: the connection was lost or never opened). */
        readonly closeCode: number,
    ) {
        super(message);
    }
}

/** The part of the WebSocket API this client uses: the browser's, Node 22's and the `ws` package's all have it. */
export interface WebSocketLike {
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: { data: unknown }) => void) | null;
    onclose: ((event: { code: number; reason: string }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    close(code?: number, reason?: string): void;
}
export type WebSocketFactory = (url: string, token: string | undefined) => WebSocketLike;

export interface ClientOptions {
    /** Bearer token: the daemon's (its data dir's `token` file) or an API key. Not needed from loopback unless
     * the daemon sets `trust_loopback = false`. */
    token?: string;
    /** `fetch` to use; default `globalThis.fetch`. */
    fetch?: typeof fetch;
    /** How to open a WebSocket; default the global `WebSocket` (token as `?token=`, since browsers cannot set
     * headers), else the `ws` package (token in `Authorization`). */
    webSocket?: WebSocketFactory;
}

export interface StreamOptions {
    /** Called with every `status` message (the session's state when the stream opens, then each change). */
    onStatus?: (status: StatusMessage) => void;
    /** Aborting closes the stream; `done` then rejects with the signal's reason. */
    signal?: AbortSignal;
}

export interface MetricsStream {
    /** Resolves with the final `status` message once the session has ended and the daemon closed the stream (or
     * with the last status seen, `null` if none, after `close()`). Rejects with a `PIVOTError` when the daemon
     * refuses (unknown session: `not_found`; bad token: `unauthorized`), with a `PIVOTConnectionError` when the
     * connection drops, or with what a callback threw. */
    readonly done: Promise<StatusMessage | null>;
    /** Stop listening. */
    close(): void;
}

export interface RequestOptions {
    query?: Record<string, string | number | boolean | null | undefined>;
    body?: unknown;
    signal?: AbortSignal;
}

export class PIVOTClient {
    readonly baseUrl: string;
    readonly #token: string | undefined;
    readonly #fetch: typeof fetch;
    readonly #webSocket: WebSocketFactory | undefined;

    /** `baseUrl` is the daemon's root, e.g. `http://localhost:8000` (routes carry their `/api/v1` prefix). */
    constructor(baseUrl: string, options: ClientOptions = {}) {
        this.baseUrl = baseUrl.replace(/\/+$/, "");
        this.#token = options.token;
        this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
        this.#webSocket = options.webSocket;
    }

    /** Any route, with this client's token and error handling: the answer's parsed JSON (undefined for 204). */
    async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
        const url = new URL(this.baseUrl + path);
        for (const [name, value] of Object.entries(options.query ?? {})) {
            if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
        }
        const headers: Record<string, string> = { accept: "application/json" };
        if (this.#token) headers.authorization = `Bearer ${this.#token}`;
        const init: RequestInit = { method, headers, signal: options.signal };
        if (options.body !== undefined) {
            headers["content-type"] = "application/json";
            init.body = JSON.stringify(options.body);
        }
        const response = await this.#fetch(url, init);
        const text = await response.text();
        if (!response.ok) throw errorFrom(response, text);
        return (text ? JSON.parse(text) : undefined) as T;
    }

    /** `GET /api/v1/health`: status, uptime, system load, components. */
    health(): Promise<Health> {
        return this.request("GET", "/api/v1/health");
    }

    /** A session from a config file under the daemon's `config_dir` (`config_path`), or an inline `config`
     * (`{"architecture", "hyperparams"}` or `{"model_id", "hyperparams"}`). */
    createSession(body: SessionCreate): Promise<SessionCreated> {
        return this.request("POST", "/api/v1/training/sessions", { body });
    }

    /** Queue the session; it runs at once when a training slot is free. 409 `conflict` unless it is `created`. */
    startTraining(sessionId: string): Promise<SessionStarted> {
        return this.request("POST", `/api/v1/training/sessions/${segment(sessionId)}/start`);
    }

    /** Stop the session (SIGTERM, grace period, SIGKILL); answers once the worker is gone. */
    stopTraining(sessionId: string): Promise<SessionStopped> {
        return this.request("POST", `/api/v1/training/sessions/${segment(sessionId)}/stop`);
    }

    /** Status, epochs, progress and latest metrics of one session. */
    getSession(sessionId: string): Promise<TrainingSession> {
        return this.request("GET", `/api/v1/training/sessions/${segment(sessionId)}`);
    }

    /** Sessions, newest first: `{sessions, total, limit, offset}`. */
    listSessions(query: ListSessionsQuery = {}): Promise<SessionList> {
        return this.request("GET", "/api/v1/training/sessions", { query });
    }

    /** Per-epoch metric records of a session. */
    getMetrics(sessionId: string, query: SessionMetricsQuery = {}): Promise<SessionMetrics> {
        return this.request("GET", `/api/v1/training/sessions/${segment(sessionId)}/metrics`, { query });
    }

    /** One metric's values by epoch (`metric_name` defaults to `val_loss`). */
    getMetricHistory(sessionId: string, query: MetricHistoryQuery = {}): Promise<MetricHistory> {
        return this.request("GET", `/api/v1/metrics/${segment(sessionId)}/history`, { query });
    }

    /** Call `callback` with each epoch's metrics over `/api/v1/ws/training/{id}`: those already recorded first,
     * then each new epoch as it ends, until the session ends (see `MetricsStream.done`). */
    streamMetrics(
        sessionId: string,
        callback: (metrics: MetricsMessage) => void,
        options: StreamOptions = {},
    ): MetricsStream {
        const path = `/api/v1/ws/training/${segment(sessionId)}`;
        const url = this.baseUrl.replace(/^http/, "ws") + path;
        let socket: WebSocketLike | undefined;
        let closed = false;
        let settle: (outcome: { status: StatusMessage | null } | { error: unknown }) => void = () => {};
        const done = new Promise<StatusMessage | null>((resolve, reject) => {
            settle = (outcome) => {
                settle = () => {};
                if ("error" in outcome) reject(outcome.error);
                else resolve(outcome.status);
            };
        });
        let last: StatusMessage | null = null;
        let opened = false;
        let refused = false; // the daemon sent an `error` message before closing
        type Outcome = { status: StatusMessage | null } | { error: unknown };
        const finish = (outcome: Outcome) => {
            options.signal?.removeEventListener("abort", onAbort);
            settle(outcome);
        };
        const stop = (outcome: Outcome) => {
            closed = true;
            socket?.close(1000);
            finish(outcome);
        };
        const onAbort = () => stop({ error: options.signal?.reason });
        options.signal?.addEventListener("abort", onAbort, { once: true });

        const open = async () => {
            if (options.signal?.aborted) return onAbort();
            const factory = this.#webSocket ?? (await defaultWebSocket());
            if (closed) return;
            const ws = factory(url, this.#token);
            socket = ws;
            ws.onopen = () => {
                opened = true;
            };
            ws.onmessage = (event) => {
                if (closed) return;
                try {
                    const message = JSON.parse(String(event.data)) as { type?: string };
                    if (message.type === "metrics") callback(message as MetricsMessage);
                    else if (message.type === "status") {
                        last = message as StatusMessage;
                        options.onStatus?.(last);
                    } else if (message.type === "error") refused = true;
                } catch (error) {
                    stop({ error }); // a callback threw, or the frame was not JSON
                }
            };
            ws.onerror = () => {}; // a close event follows, which says what happened
            ws.onclose = (event) => {
                if (closed) return finish({ status: last });
                closed = true;
                if (event.code === 1000 && last && FINAL_SESSION_STATES.includes(last.status)) {
                    return finish({ status: last });
                }
                if (refused || !opened || event.code === 1008) {
                    // The handshake was refused (401, 403, 429), the session is unknown, or the credentials ended
                    // (1008). A browser does not show why, so ask the session's REST route: its error envelope says.
                    this.getSession(sessionId).then(
                        () => finish({ error: new PIVOTConnectionError(`${path}: closed (${event.code})`, event.code) }),
                        (error: unknown) => finish({ error }),
                    );
                    return;
                }
                const why = event.code === 1001 ? "the daemon is shutting down" : "the connection was lost";
                const reason = event.reason ? `: ${event.reason}` : "";
                finish({ error: new PIVOTConnectionError(`${path}: ${why} (${event.code}${reason})`, event.code) });
            };
        };
        open().catch((error: unknown) => finish({ error }));
        return { done, close: () => stop({ status: last }) };
    }

    /** Wait until the session ends (completed, failed or stopped) and return its final state. */
    async waitForCompletion(sessionId: string, options: { signal?: AbortSignal } = {}): Promise<TrainingSession> {
        await this.streamMetrics(sessionId, () => {}, options).done;
        return this.getSession(sessionId);
    }
}

function isObject(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An id as one path segment. `.` and `..` cannot be sent as one (URL parsing resolves them, `%2E` too), and
 * are never ids, nor is the empty string. */
function segment(id: string): string {
    if (id === "" || id === "." || id === "..") throw new TypeError(`${JSON.stringify(id)} is not a session id`);
    return encodeURIComponent(id);
}

/** A PIVOTError from an error answer, whichever family's envelope it is in (like shared.models.errors). */
function errorFrom(response: Response, text: string): PIVOTError {
    let body: unknown;
    try {
        body = JSON.parse(text);
    } catch {
        return new PIVOTError(response.status, "http_error", text.slice(0, 200) || response.statusText, undefined, text);
    }
    const inner = isObject(body) ? (body.error ?? body.detail) : undefined;
    if (isObject(inner)) {
        // P and C: {"error": {"code", "message", "details"}}; L: {"detail": {"error", "message", "fields"}}
        const code = inner.code ?? inner.error;
        return new PIVOTError(
            response.status,
            typeof code === "string" ? code : "http_error",
            typeof inner.message === "string" ? inner.message : response.statusText,
            inner.details ?? inner.fields,
            body,
        );
    }
    if (Array.isArray(inner)) {
        // L's 422: FastAPI's {"detail": [{"loc", "msg", "type", "field"}]}
        const items = inner.filter(isObject);
        const message = items.map((item) => `${String(item.field ?? "body")}: ${String(item.msg)}`).join("; ");
        return new PIVOTError(response.status, "validation_error", message, inner, body);
    }
    const message = typeof inner === "string" ? inner : response.statusText; // F and M: {"error": msg}
    return new PIVOTError(response.status, "http_error", message, undefined, body);
}

type WebSocketClass = new (url: string) => WebSocketLike;
type NodeWebSocketClass = new (url: string, options: { headers: Record<string, string> }) => WebSocketLike;

let nodeWebSocket: Promise<NodeWebSocketClass> | undefined;

async function defaultWebSocket(): Promise<WebSocketFactory> {
    const global = (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
    if (typeof global === "function") {
        return (url, token) => new global(token ? `${url}?token=${encodeURIComponent(token)}` : url);
    }
    // Node 20 has no WebSocket: the `ws` package, imported only here so browsers never load it.
    nodeWebSocket ??= import("ws").then((module) => module.WebSocket as unknown as NodeWebSocketClass);
    const NodeWebSocket = await nodeWebSocket;
    return (url, token) => new NodeWebSocket(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
}
