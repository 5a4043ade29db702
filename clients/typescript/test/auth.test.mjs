// Token auth against a daemon that trusts no one without credentials (trust_loopback = false), as on a shared
// machine or for any non-loopback peer: the daemon token from its data dir's `token` file, over HTTP and WebSocket.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebSocket as NodeWebSocket } from "ws";
import { PIVOTClient, PIVOTError } from "@pivot/client";
import { startPivotd } from "../scripts/pivotd.mjs";
import { TRAIN_CONFIG } from "./fixtures.mjs";

/** @type {import("../scripts/pivotd.mjs").Pivotd} */
let daemon;

before(async () => {
    daemon = await startPivotd({ trust_loopback: "false" });
});
after(() => daemon.stop());

/** @param {Promise<unknown>} promise @param {number} status @param {string} code */
async function refused(promise, status, code) {
    await assert.rejects(promise, (error) => {
        assert.ok(error instanceof PIVOTError, String(error));
        assert.equal(error.status, status, error.message);
        assert.equal(error.code, code, error.message);
        return true;
    });
}

/** A session that is already over, so that its stream ends on its own: created, then stopped. */
async function stoppedSession(/** @type {PIVOTClient} */ client) {
    const { session_id } = await client.createSession({ config: TRAIN_CONFIG, session_name: "auth" });
    await client.stopTraining(session_id);
    return session_id;
}

test("without a token, or with a wrong one, every call is a PIVOTError unauthorized", async () => {
    const owner = new PIVOTClient(daemon.url, { token: daemon.token() });
    const sessionId = await stoppedSession(owner);
    for (const client of [new PIVOTClient(daemon.url), new PIVOTClient(daemon.url, { token: "not-the-token" })]) {
        await refused(client.listSessions(), 401, "unauthorized");
        await refused(client.getSession(sessionId), 401, "unauthorized");
        await refused(client.createSession({ config: TRAIN_CONFIG }), 401, "unauthorized");
        // The handshake is refused with 401: the stream rejects with the same typed error.
        await refused(client.streamMetrics(sessionId, () => {}).done, 401, "unauthorized");
    }
});

test("with the daemon's token: HTTP, and the WebSocket with the token in Authorization (Node's ws)", async () => {
    const client = new PIVOTClient(daemon.url, { token: daemon.token() });
    const sessionId = await stoppedSession(client);
    assert.ok((await client.listSessions()).sessions.some((s) => s.session_id === sessionId));
    const ended = await client.streamMetrics(sessionId, () => {}).done;
    assert.equal(ended?.status, "stopped");
    assert.equal((await client.waitForCompletion(sessionId)).status, "stopped");
});

test("with the daemon's token where there is a global WebSocket (browsers): the token goes in ?token=", async (t) => {
    const client = new PIVOTClient(daemon.url, { token: daemon.token() });
    const sessionId = await stoppedSession(client);
    /** @type {string[]} */
    const opened = [];
    // A browser-like WebSocket: a URL and nothing else, so no headers can be set.
    class BrowserLikeWebSocket extends NodeWebSocket {
        constructor(/** @type {string} */ url) {
            opened.push(url);
            super(url);
        }
    }
    const previous = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
    Object.defineProperty(globalThis, "WebSocket", { value: BrowserLikeWebSocket, configurable: true, writable: true });
    t.after(() => {
        if (previous) Object.defineProperty(globalThis, "WebSocket", previous);
        else Reflect.deleteProperty(globalThis, "WebSocket");
    });
    const ended = await client.streamMetrics(sessionId, () => {}).done;
    assert.equal(ended?.status, "stopped");
    assert.equal(opened.length, 1);
    const url = new URL(opened[0] ?? "");
    assert.equal(url.pathname, `/api/v1/ws/training/${sessionId}`);
    assert.equal(url.searchParams.get("token"), daemon.token());
});
