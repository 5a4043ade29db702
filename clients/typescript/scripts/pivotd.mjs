// A real pivotd for the tests and for `npm run generate`: its own temporary data and config directories, a free
// loopback port, and its URL taken from the "pivotd listening on <url>" line it logs once it serves (no polling).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** `$PIVOTD` (a path to the `pivotd` executable, relative to the working directory), else the repository's
 * `.venv/bin/pivotd` (two levels above this package). */
export function pivotdExecutable() {
    const configured = process.env.PIVOTD;
    return configured
        ? resolve(configured)
        : fileURLToPath(new URL("../../../.venv/bin/pivotd", import.meta.url));
}

/**
 * @typedef {object} Pivotd
 * @property {string} url the daemon's base URL, e.g. `http://127.0.0.1:41234`
 * @property {string} dataDir its state directory (database, `token`, `daemon.json`)
 * @property {string} configDir its `config_dir`: session config files live under it
 * @property {() => string} token the daemon token, as its `token` file holds it
 * @property {() => string} log what it has logged so far
 * @property {() => Promise<void>} stop SIGTERM, wait for the exit, remove the directories
 */

/**
 * Start pivotd. `PIVOT_*` variables of this environment are not passed on (a developer's `PIVOT_TOKEN` would
 * become the daemon's token); `settings` are, as `PIVOT_<NAME>` variables.
 * @param {Record<string, string>} [settings] e.g. `{ trust_loopback: "false" }`
 * @returns {Promise<Pivotd>}
 */
export async function startPivotd(settings = {}) {
    const root = mkdtempSync(join(tmpdir(), "pivot-ts-"));
    const dataDir = join(root, "state");
    const configDir = join(root, "config");
    /** @type {Record<string, string>} */
    const env = {};
    for (const [name, value] of Object.entries(process.env)) {
        if (!name.startsWith("PIVOT_") && value !== undefined) env[name] = value;
    }
    env.PIVOT_CONFIG_DIR = configDir;
    env.PIVOT_WORKER_THREADS = "1"; // the machines that run these tests have few cores, shared
    for (const [name, value] of Object.entries(settings)) env[`PIVOT_${name.toUpperCase()}`] = value;

    const executable = pivotdExecutable();
    const child = spawn(executable, ["--port", "0", "--data-dir", dataDir], {
        env,
        stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = new Promise((done) => child.once("exit", done));
    const killOnExit = () => child.kill("SIGKILL");
    process.once("exit", killOnExit);
    let log = "";
    const url = await new Promise((ready, fail) => {
        child.once("error", (error) => fail(new Error(`could not run ${executable} (set PIVOTD): ${error.message}`)));
        child.stderr.setEncoding("utf8");
        child.stderr.on("data", (/** @type {string} */ chunk) => {
            log += chunk;
            const found = /pivotd listening on (\S+)/.exec(log);
            if (found) ready(found[1]);
        });
        child.once("exit", (code) => fail(new Error(`pivotd exited with ${code} before serving:\n${log}`)));
    });
    return {
        url,
        dataDir,
        configDir,
        token: () => readFileSync(join(dataDir, "token"), "utf8").trim(),
        log: () => log,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
            await exited;
            process.removeListener("exit", killOnExit);
            rmSync(root, { recursive: true, force: true });
        },
    };
}
