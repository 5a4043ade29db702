"""bench/fanout: POST-to-WebSocket delivery latency, and what subscribers cost ingestion.

1. 10 live /ws subscribers, steps POSTed at 500/s: delivery latency from the POST leaving the
   client to the `new_metrics` message arriving, per subscriber (p50/p99), next to the 202 ack.
2. Closed-loop ingest throughput in the same run with no subscriber (the baseline), with one
   stalled subscriber that never reads, and with 10 live subscribers.

    .venv/bin/python bench/fanout.py [--seconds 8]

With `--subscribers N`, only this instead: closed-loop sequential ingest (one connection, one 3-layer step at a
time) with no subscriber and with N idle-reading /ws subscribers, alternated round by round, then the medians
and their ratio. The subscribers live in a process of their own that reads every byte sent and does nothing
else (it walks the frame headers to count messages and answers pings: no JSON, no decompression). Where the
machine has 2+ cores, the daemon (all its threads) is pinned to one core and the subscribers' process and the
load generator to another (a third core, if there is one, takes the load generator), so the readers' CPU is
not the daemon's; the output says which.

    .venv/bin/python bench/fanout.py --subscribers 200 [--rounds 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ProcessMeter, RawHTTP, percentile, pivotd, step_template
from bench.ingest import BodyMaker, run, single

LAYERWISE = "/api/v1/metrics/layerwise"


async def delivery(url: str, subscribers: int, rate: float, seconds: float) -> tuple[list[float], list[float], int]:
    ws_url = "ws" + url.removeprefix("http") + "/ws"
    sockets = [await connect(ws_url, max_size=None) for _ in range(subscribers)]
    for ws in sockets:
        await ws.recv()  # initial_runs
    sent: dict[int, float] = {}
    delays: list[float] = []
    total = int(rate * seconds)

    async def listen(ws) -> None:  # type: ignore[no-untyped-def]
        received = 0
        while received < total:
            message = json.loads(await ws.recv())
            if message["type"] == "new_metrics" and message["run_id"] == "fanout":
                delays.append(time.perf_counter() - sent[message["data"]["step"]])
                received += 1

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    before, after = step_template("fanout", 3)
    http = await RawHTTP.open(url)
    acks: list[float] = []
    start = time.perf_counter()
    for step in range(total):
        delay = start + step / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[step] = time.perf_counter()
        status, _ = await http.post(LAYERWISE, before + str(step).encode() + after)
        acks.append(time.perf_counter() - sent[step])
        assert status == 202
    done, pending = await asyncio.wait(listeners, timeout=10)
    lost = subscribers * total - len(delays)
    for ws in sockets:
        await ws.close()
    http.close()
    return delays, acks, lost


def throughput(url: str, pid: int, seconds: float, label: str) -> str:
    return run(f"ingest, 16 clients, {label}", url, pid, 16, seconds, single(3)).line("steps/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="per scenario (8) or per round with --subscribers (4)")
    parser.add_argument(
        "--subscribers", type=int, help="only: sequential ingest with none vs this many idle-reading subscribers"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds with --subscribers")
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="subscribers do not offer permessage-deflate (browsers and the websockets client do)",
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="with --subscribers: leave every process on every core"
    )
    parser.add_argument("--readers", metavar="URL", help=argparse.SUPPRESS)  # internal: 10 live subscribers
    parser.add_argument("--stalled", metavar="URL", help=argparse.SUPPRESS)  # internal: 1 stalled subscriber
    parser.add_argument("--idle-readers", metavar="URL", help=argparse.SUPPRESS)  # internal: --subscribers' readers
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)  # internal: the core --idle-readers runs on
    args = parser.parse_args()
    if args.idle_readers:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        try:  # the daemon's own loop: the readers' CPU per message as low as it goes
            import uvloop

            uvloop.run(idle_readers(args.idle_readers, args.subscribers, args.deflate))
        except ImportError:
            asyncio.run(idle_readers(args.idle_readers, args.subscribers, args.deflate))
        return
    if args.readers or args.stalled:
        asyncio.run(subscribe(args.readers or args.stalled, 10 if args.readers else 1, read=bool(args.readers)))
        return
    if args.subscribers:
        scale(args.subscribers, args.rounds, args.seconds or 4, args.deflate, args.pin)
        return
    args.seconds = args.seconds or 8
    print(f"bench/fanout: {args.seconds:.0f} s per scenario\n")
    with pivotd(ws_queue_size="1000") as daemon:
        delays, acks, lost = asyncio.run(delivery(daemon.url, 10, 500, args.seconds))
        print(
            f"10 subscribers @ 500 steps/s: delivery p50 {percentile(delays, 50) * 1e3:.2f} ms "
            f"p99 {percentile(delays, 99) * 1e3:.2f} ms max {max(delays) * 1e3:.2f} ms "
            f"({len(delays):,} deliveries, {lost} missing); POST ack p50 {percentile(acks, 50) * 1e3:.2f} ms "
            f"p99 {percentile(acks, 99) * 1e3:.2f} ms"
        )

        # Alternated twice: the difference must be judged against run-to-run noise.
        for _ in range(2):
            print(throughput(daemon.url, daemon.pid, args.seconds, "no subscriber (baseline)"))
            with helper_process("--stalled", daemon.url):
                print(throughput(daemon.url, daemon.pid, args.seconds, "1 stalled subscriber"))

        with helper_process("--readers", daemon.url):
            print(throughput(daemon.url, daemon.pid, args.seconds, "10 live subscribers"))


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread a process has now; threads it starts later inherit their creator's affinity."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def fresh_steps(run_id: str) -> BodyMaker:
    """3-layer steps of one run, numbered from 0: a run per round, so no round overwrites another's steps."""
    before, after = step_template(run_id, 3)
    return lambda client, sequence: (LAYERWISE, before + str(sequence).encode() + after, 1)


def scale(subscribers: int, rounds: int, seconds: float, deflate: bool, pinned: bool = True) -> None:
    """Sequential closed-loop ingest with none vs `subscribers` idle-reading /ws subscribers, alternated."""
    cores = sorted(os.sched_getaffinity(0))
    placement: tuple[int, int, int] | None = None
    if not pinned:
        where = "nothing pinned (--no-pin): the subscribers' CPU may be the daemon's"
    elif len(cores) >= 2:
        placement = (cores[0], cores[1], cores[2] if len(cores) > 2 else cores[1])
        where = (
            f"daemon pinned to core {placement[0]}, subscribers' process to core {placement[1]}, "
            f"load generator to core {placement[2]}"
        )
    else:
        where = "1 core: nothing pinned, the subscribers' CPU is the daemon's too"
    print(
        f"bench/fanout --subscribers {subscribers}: sequential ingest (1 connection, 3-layer steps), {seconds:g} s "
        f"per round, {rounds} rounds alternating 0 and {subscribers} idle-reading /ws subscribers "
        f"({'offering' if deflate else 'not offering'} permessage-deflate); {where}\n"
    )
    rates: dict[int, list[float]] = {0: [], subscribers: []}
    costs: dict[int, list[float]] = {0: [], subscribers: []}
    with pivotd(ws_queue_size="1000") as daemon:
        if placement is not None:
            pin(daemon.pid, {placement[0]})
            pin(os.getpid(), {placement[2]})
        run("warm-up", daemon.url, daemon.pid, 1, 1, fresh_steps("fanout_warmup"))
        for round_ in range(rounds):
            # ABBA: a drift in the machine's speed over the run lands on both sides alike.
            for count in (0, subscribers) if round_ % 2 == 0 else (subscribers, 0):
                label = f"{round_ + 1}: {count} subscribers"
                steps = fresh_steps(f"fanout_r{round_}_{count}")
                if not count:
                    result = run(label, daemon.url, daemon.pid, 1, seconds, steps)
                    extra = ""
                else:
                    cpu = placement[1] if placement is not None else None
                    with IdleReaders(daemon.url, count, cpu, deflate) as readers:
                        with ProcessMeter(readers.pid) as reader_meter:
                            result = run(label, daemon.url, daemon.pid, 1, seconds, steps)
                        fewest, most, per_read = readers.counts()
                    # Each subscriber gets initial_runs, then one new_metrics per step.
                    missing = result.units + 1 - fewest
                    extra = (
                        f"  readers cpu {reader_meter.cpu * 100:3.0f}%  messages per subscriber {fewest:,}-{most:,}"
                        f" ({missing} missing), {per_read:.1f} per read"
                    )
                rates[count].append(result.units / result.seconds)
                costs[count].append(result.cpu * result.seconds / result.units)
                print(result.line("steps/s") + f"  {costs[count][-1] * 1e6:5.0f} us cpu/step" + extra)
    none, many = statistics.median(rates[0]), statistics.median(rates[subscribers])
    cost_none, cost_many = statistics.median(costs[0]), statistics.median(costs[subscribers])
    print(
        f"\nmedian steps/s: {none:,.0f} with no subscriber, {many:,.0f} with {subscribers}: "
        f"ratio {many / none:.2f} (target >= 0.50)"
    )
    print(
        f"median daemon CPU per step: {cost_none * 1e6:.0f} us with no subscriber, {cost_many * 1e6:.0f} us with "
        f"{subscribers}: {(cost_many - cost_none) / subscribers * 1e6:.1f} us per subscriber per message"
    )


class IdleReaders:
    """`count` idle-reading subscribers in a process of their own (`idle_readers`), optionally on one core."""

    def __init__(self, url: str, count: int, cpu: int | None, deflate: bool) -> None:
        command = [sys.executable, __file__, "--idle-readers", url, "--subscribers", str(count)]
        command += [] if cpu is None else ["--cpu", str(cpu)]
        command += [] if deflate else ["--no-deflate"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.process.pid

    def __enter__(self) -> IdleReaders:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"connected", "the subscribers did not connect"
        return self

    def counts(self) -> tuple[int, int, float]:
        """(fewest, most) messages a subscriber has read, once nothing more arrives, and the mean messages per
        read (how many the daemon's writes carried, give or take what the kernel merged)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"count\n")
        self.process.stdin.flush()
        fewest, most, per_read = json.loads(self.process.stdout.readline())
        return fewest, most, per_read

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process.stdout.close()


class RawReader(asyncio.Protocol):
    """One idle-reading subscriber: reads every byte, walks the frame headers to count messages, answers pings.

    No JSON, no decompression, no copy of a payload: as little client CPU per message as Python allows.
    """

    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request, self.ready = request, ready
        self.head = b""
        self.pending = b""
        self.skip = 0
        self.messages = 0
        self.reads = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        if not self.ready.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(self.head[:end].decode(errors="replace")))
                return
            data, self.head = self.head[end + 4 :], b""
            self.ready.set_result(None)
        if self.skip:
            if self.skip >= len(data):
                self.skip -= len(data)
                return
            data, self.skip = data[self.skip :], 0
        if self.pending:
            data, self.pending = self.pending + data, b""
        position, size = 0, len(data)
        while size - position >= 2:
            first, length = data[position], data[position + 1] & 0x7F
            head = 2
            if length == 126:
                if size - position < 4:
                    break
                length, head = int.from_bytes(data[position + 2 : position + 4], "big"), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, head = int.from_bytes(data[position + 2 : position + 10], "big"), 10
            end = position + head + length
            if first & 0x0F >= 8:  # a control frame: read whole, a ping answered
                if end > size:
                    break
                if first & 0x0F == 9 and self.transport is not None:
                    payload = data[position + head : end]  # a client frame is masked: a zero key leaves it as is
                    self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                position = end
                continue
            if first & 0x80:
                self.messages += 1  # the final frame of a message
            if end > size:
                self.skip = end - size
                return
            position = end
        self.pending = data[position:]


async def idle_readers(url: str, count: int, deflate: bool) -> None:
    """Connect `count` raw subscribers to /ws, say `connected` once each has its initial_runs, and answer each
    `count` line on stdin with the fewest and most messages a subscriber has read, once that stops growing."""
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    readers: list[RawReader] = []
    extensions = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""

    async def open_one() -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        ).encode()
        reader = RawReader(request, loop.create_future())
        await loop.create_connection(lambda: reader, host, int(port))
        await reader.ready
        readers.append(reader)

    await asyncio.gather(*(open_one() for _ in range(count)))
    while any(reader.messages < 1 for reader in readers):
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while await commands.readline():
        total = -1
        for _ in range(100):  # at most 10 s
            now = sum(reader.messages for reader in readers)
            if now == total:
                break
            total = now
            await asyncio.sleep(0.1)
        counts = [reader.messages for reader in readers]
        reads = sum(reader.reads for reader in readers)
        print(json.dumps([min(counts), max(counts), sum(counts) / reads]), flush=True)
    for reader in readers:
        if reader.transport is not None:
            reader.transport.close()


@contextmanager
def helper_process(role: str, url: str) -> Iterator[None]:
    """Subscribers live in a process of their own so they take neither the load generator's CPU nor its GIL."""
    helper = subprocess.Popen([sys.executable, __file__, role, url], stdout=subprocess.PIPE)
    assert helper.stdout is not None and helper.stdout.readline().strip() == b"connected"
    try:
        yield
    finally:
        helper.terminate()
        helper.wait(10)
        helper.stdout.close()


async def subscribe(url: str, count: int, read: bool) -> None:
    # A stalled client never reads: with a one-message queue its socket buffers fill and stay full.
    sockets = [
        await connect("ws" + url.removeprefix("http") + "/ws", max_size=None, max_queue=None if read else 1)
        for _ in range(count)
    ]
    print("connected", flush=True)

    async def drain(ws) -> None:  # type: ignore[no-untyped-def]
        async for _ in ws:
            pass

    if read:
        await asyncio.gather(*(drain(ws) for ws in sockets))
    else:
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
