// The session methods that need no training, and the typed errors, against a real pivotd.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { PIVOTClient, PIVOTError } from "@pivot/client";
import { startPivotd } from "../scripts/pivotd.mjs";
import { TRAIN_CONFIG } from "./fixtures.mjs";

/** @type {import("../scripts/pivotd.mjs").Pivotd} */
let daemon;
/** @type {PIVOTClient} */
let client;

before(async () => {
    daemon = await startPivotd();
    client = new PIVOTClient(`${daemon.url}/`); // a trailing slash is tolerated
});
after(() => daemon.stop());

/** Assert that `promise` rejects with a PIVOTError of this status and code; returns the error. */
async function refused(/** @type {Promise<unknown>} */ promise, /** @type {number} */ status, /** @type {string} */ code) {
    /** @type {PIVOTError | undefined} */
    let caught;
    await assert.rejects(promise, (error) => {
        assert.ok(error instanceof PIVOTError, String(error));
        caught = error;
        return true;
    });
    assert.ok(caught);
    assert.equal(caught.status, status, caught.message);
    assert.equal(caught.code, code, caught.message);
    return caught;
}

test("an unknown session is a PIVOTError with pivotd's not_found envelope, on every method", async () => {
    const error = await refused(client.getSession("r_does_not_exist"), 404, "not_found");
    assert.equal(error.name, "PIVOTError");
    assert.match(error.message, /r_does_not_exist/);
    assert.deepEqual(error.details, { field: "session_id" });
    assert.equal(error.envelope?.error.code, "not_found");
    assert.deepEqual(error.body, error.envelope);
    await refused(client.startTraining("r_does_not_exist"), 404, "not_found");
    await refused(client.stopTraining("r_does_not_exist"), 404, "not_found");
    await refused(client.getMetrics("r_does_not_exist"), 404, "not_found");
    await refused(client.getMetricHistory("r_does_not_exist"), 404, "not_found");
    // The WebSocket says only "error" and closes; the stream still rejects with the daemon's typed error.
    /** @type {unknown[]} */
    const received = [];
    await refused(client.streamMetrics("r_does_not_exist", (m) => received.push(m)).done, 404, "not_found");
    await refused(client.waitForCompletion("r_does_not_exist"), 404, "not_found");
    assert.deepEqual(received, []);
});

test("validation failures are PIVOTErrors with code validation_error", async () => {
    const neither = await refused(client.createSession({ session_name: "no config" }), 422, "validation_error");
    assert.match(neither.message, /config_path or config/);
    await refused(client.listSessions({ limit: 0 }), 422, "validation_error");
    // An id is sent as one path segment (`?`, `#` and spaces escaped), which the daemon's id pattern refuses.
    const badId = await refused(client.getSession("bad id?#"), 422, "validation_error");
    assert.match(badId.message, /session_id/);
    assert.throws(() => client.getSession(".."), TypeError);
});

test("list, get, stop, metrics and streams of a session that never trains", async () => {
    const created = await client.createSession({ config: TRAIN_CONFIG, session_name: "inline", tags: ["ts"] });
    assert.equal(created.status, "created");
    assert.deepEqual(created.tags, ["ts"]);
    assert.equal(created.config.epochs, 2);

    const listed = await client.listSessions({ status: "created", limit: 10 });
    assert.ok(listed.sessions.some((s) => s.session_id === created.session_id));
    assert.equal(listed.limit, 10);

    const fetched = await client.getSession(created.session_id);
    assert.equal(fetched.total_epochs, 2);
    assert.equal(fetched.current_epoch, 0);

    // A stream of a session that has not started stays open: close() ends it with the state seen.
    /** @type {string[]} */
    const statuses = [];
    /** @type {(value?: unknown) => void} */
    let sawStatus = () => {};
    const first = new Promise((resolve) => (sawStatus = resolve));
    const stream = client.streamMetrics(created.session_id, () => assert.fail("no metrics expected"), {
        onStatus: (s) => {
            statuses.push(s.status);
            sawStatus();
        },
    });
    await first;
    stream.close();
    assert.equal((await stream.done)?.status, "created");

    const stopped = await client.stopTraining(created.session_id);
    assert.equal(stopped.status, "stopped");
    const final = await client.waitForCompletion(created.session_id);
    assert.equal(final.status, "stopped");
    assert.deepEqual((await client.getMetrics(created.session_id)).metrics, []);
    assert.deepEqual((await client.getMetricHistory(created.session_id)).values, []);
    await refused(client.startTraining(created.session_id), 409, "conflict");
    assert.deepEqual(statuses, ["created"]);
});

test("an aborted wait rejects with the signal's reason", async () => {
    const created = await client.createSession({ config: TRAIN_CONFIG });
    const controller = new AbortController();
    const waiting = client.waitForCompletion(created.session_id, { signal: controller.signal });
    controller.abort(new Error("enough"));
    await assert.rejects(waiting, /enough/);
});

test("health and any other route through request()", async () => {
    const health = await client.health();
    assert.equal(health.status, "healthy");
    assert.equal(health.components.database, "healthy");
    await refused(client.request("GET", "/api/v1/checkpoints/ckpt_nope/download"), 404, "not_found");
});
