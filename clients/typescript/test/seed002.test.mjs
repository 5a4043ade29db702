// Seed 002's TypeScript example ("SDKs: JavaScript/TypeScript Client"), as written there but for the daemon's URL
// and the import, against a real pivotd training a real (small) model.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PIVOTClient } from "@pivot/client";
import { startPivotd } from "../scripts/pivotd.mjs";
import { TRAIN_CONFIG } from "./fixtures.mjs";

const EPOCHS = TRAIN_CONFIG.hyperparams.epochs;

test("seed 002's example: create a session from a config file, start it, stream its metrics, wait", { timeout: 180_000 }, async (t) => {
    const daemon = await startPivotd();
    t.after(() => daemon.stop());
    // The seed's `config_path: 'configs/train.yaml'`, under the daemon's config_dir (YAML is a superset of JSON).
    mkdirSync(join(daemon.configDir, "configs"), { recursive: true });
    writeFileSync(join(daemon.configDir, "configs", "train.yaml"), JSON.stringify(TRAIN_CONFIG));

    /** @type {string[]} */
    const logged = [];
    /** @type {() => void} */
    let bothEpochsLogged = () => {};
    const logging = new Promise((/** @type {(value?: unknown) => void} */ resolve) => {
        bothEpochsLogged = resolve;
    });
    t.mock.method(console, "log", (/** @type {string} */ line) => {
        logged.push(line);
        if (logged.length === EPOCHS) bothEpochsLogged();
    });

    // ---- seed 002, as written ('http://localhost:8000' is this daemon's URL) ----
    const client = new PIVOTClient(daemon.url);

    // Create and start session
    const session = await client.createSession({
        config_path: 'configs/train.yaml',
        session_name: 'my_experiment'
    });

    await client.startTraining(session.session_id);

    // Stream updates via WebSocket
    client.streamMetrics(session.session_id, (metrics) => {
        console.log(`Epoch ${metrics.epoch}: Loss ${metrics.val_loss}`);
    });
    // ---- end of the seed's example ----

    const final = await client.waitForCompletion(session.session_id);
    await logging; // the example's own stream delivers the last epoch on its own socket
    assert.equal(session.status, "created");
    assert.equal(session.session_name, "my_experiment");
    assert.equal(final.status, "completed", JSON.stringify(final));
    assert.equal(final.current_epoch, 2);
    assert.equal(final.progress, 1);

    const { metrics } = await client.getMetrics(session.session_id);
    assert.deepEqual(metrics.map((m) => m.epoch), [1, 2]);
    assert.deepEqual(logged, metrics.map((m) => `Epoch ${m.epoch}: Loss ${m.val_loss}`));
    assert.equal(final.latest_metrics.val_loss, metrics[1]?.val_loss);

    const history = await client.getMetricHistory(session.session_id, { metric_name: "train_loss" });
    assert.deepEqual(history.epochs, [1, 2]);
    assert.deepEqual(history.values, metrics.map((m) => m.train_loss));

    const listed = await client.listSessions({ status: "completed" });
    assert.deepEqual(listed.sessions.map((s) => s.session_id), [session.session_id]);
    assert.equal(listed.total, 1);

    // A stream opened after the end replays the history, then the final status, and ends.
    /** @type {number[]} */
    const replayed = [];
    const ended = await client.streamMetrics(session.session_id, (m) => replayed.push(m.epoch)).done;
    assert.deepEqual(replayed, [1, 2]);
    assert.equal(ended?.status, "completed");
});
