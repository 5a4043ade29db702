// Drives pivotd's /socket/websocket with the real Phoenix JavaScript client (tests/test_phoenix_socket.py).
// Usage: node client.mjs <socket url, e.g. ws://127.0.0.1:8000/socket> <token> <experiment id> [params|authToken]
// The token travels as a connect param (`?token=`) or with the `authToken` option (a WebSocket subprotocol).
// Prints one JSON object per line: what happened, in order. The test publishes events after "ready".
import { Socket } from "phoenix"
import WebSocket from "ws"

const [url, token, experimentId, auth = "params"] = process.argv.slice(2)
const say = (step, data = {}) => console.log(JSON.stringify({ step, ...data }))
const fail = (why) => { say("failed", { why }); process.exit(1) }
setTimeout(() => fail("timed out"), 20000)

// Node 20 has no global WebSocket: the `ws` package is the transport. A short heartbeat interval
// exercises the server's heartbeat replies within the test's time.
const credentials = auth === "authToken" ? { authToken: token } : { params: { token } }
const socket = new Socket(url, { ...credentials, transport: WebSocket, heartbeatIntervalMs: 200 })
socket.onError((error) => fail(`socket error: ${error && error.message}`))
socket.connect()

const experiment = socket.channel(`experiment:${experimentId}`, {})
const telemetry = socket.channel("telemetry:all", {})
const unknown = socket.channel("nonsense:1", {})
let heartbeats = 0
let telemetryEvent = null

experiment.on("status_changed", (payload) => {
  say("status_changed", { payload })
  experiment.leave().receive("ok", () => say("left"))
})
experiment.onClose(() => {
  say("closed")
  if (heartbeats > 0 && telemetryEvent) { socket.disconnect(() => process.exit(0)) } else { fail("no heartbeat or event") }
})
telemetry.on("event", (event) => { telemetryEvent = event; say("telemetry_event", { event }) })

const joined = (channel) => new Promise((resolve, reject) => {
  channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", () => reject("timeout"))
})

unknown.join().receive("error", ({ reason }) => {
  say("join_refused", { reason })
  unknown.leave() // otherwise the client retries the join every few seconds
})

const waitForHeartbeat = () => new Promise((resolve) => {
  const ping = () => socket.ping((rtt) => { heartbeats += 1; resolve(rtt) }) || setTimeout(ping, 50)
  ping()
})

try {
  await joined(experiment)
  await joined(telemetry)
  const filter = await new Promise((resolve, reject) => {
    telemetry.push("subscribe", { event_types: ["model.inference"] })
      .receive("ok", resolve).receive("error", reject)
  })
  say("subscribed", { filter })
  await waitForHeartbeat()
  say("ready")
} catch (error) {
  fail(`join or subscribe failed: ${JSON.stringify(error)}`)
}
