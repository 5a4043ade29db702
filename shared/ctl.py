"""`pivotctl`: the command line for managed training (train, runs, cancel, infer, params), jobs (submit, queue,
logs), experiments (exp create, start, wait, test, export) and API keys.

Needs only the base install (the `shared` package), so it works from a laptop against a remote daemon
(`--url`, `--token`, or `PIVOT_URL`/`PIVOT_TOKEN`; or `--host NAME` from hosts.toml, through ssh for an `ssh` box,
for the command's duration). Exit codes scripts can rely on:
0 done (with `--wait`: the run succeeded), 1 the run failed or was cancelled, 2 bad usage or input file,
3 the daemon refused the request (4xx), 4 the daemon is unreachable or failed (5xx).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from shared.client import FINAL_STATES, PivotAPIError, PivotClient
from shared.ctl_hosts import target
from shared.models.registry import ManagedRun
from shared.models.runs import RunState
from shared.tunnel import TunnelError

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


class UsageError(Exception):
    """A bad argument or input file: exit 2 with the message."""


def _load(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text() if path != "-" else sys.stdin.read())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(_plain(value), indent=2) if args.json else text)


def _plain(value: Any) -> Any:
    """JSON-ready: models as the daemon sent them (unset optional fields left out)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def cmd_train(client: PivotClient, args: argparse.Namespace) -> int:
    hyperparams = _load(args.hyperparams) if args.hyperparams else None
    if args.model:
        started = client.train(hyperparams=hyperparams, model_id=args.model)
    else:
        if not args.architecture:
            raise UsageError("give an architecture JSON file, or --model ID")
        document = _load(args.architecture)
        # Accept either a bare architecture or {"architecture": ..., "hyperparams": ...}.
        architecture = document.get("architecture", document) if isinstance(document, dict) else document
        hyperparams = hyperparams or (document.get("hyperparams") if isinstance(document, dict) else None)
        # A stored model's train queues behind busy slots, where `POST /api/train` would answer 409.
        model = client.create_model(architecture, hyperparams)
        started = client.train(hyperparams=hyperparams, model_id=model.model_id)
    run_id = started.run_id
    if not args.wait:
        _print(args, started, run_id)
        return EXIT_OK
    for event, data in client.run_events(run_id):
        if not args.json and event == "metric":
            print(f"epoch {data['epoch']}: train_loss {data['train_loss']:.4f}  val_loss {data['val_loss']:.4f}  "
                  f"val_accuracy {data['val_accuracy']:.4f}", file=sys.stderr)  # fmt: skip
        if event == "state" and data["state"] in FINAL_STATES:
            break
    run = client.run(run_id)
    _print(args, run, f"{run_id} {run.state}" + (f": {run.error}" if run.error else "")
           + (f" param_id={run.param_id}" if run.param_id else "")
           + (f" on {_gpus(run)}" if run.gpus else ""))  # fmt: skip
    return EXIT_OK if run.state == RunState.SUCCEEDED else EXIT_RUN_FAILED


def _gpus(run: ManagedRun) -> str:
    """Where a run trained: `GPU 0 (NVIDIA A100, GPU-5d1e...)`, or nothing when it had no GPU."""
    return ", ".join(f"GPU {gpu.index} ({gpu.name}, {gpu.uuid})" for gpu in run.gpus)


def _value(value: float | None) -> str:
    """A metric for people: `-` until it is measured, never `nan`."""
    return "-" if value is None or value != value else f"{value:.4f}"


def cmd_runs(client: PivotClient, args: argparse.Namespace) -> int:
    model_ids = [args.model] if args.model else [m.model_id for m in client.models()]
    runs = [run for model_id in model_ids for run in client.model_runs(model_id)]
    runs.sort(key=lambda run: run.created_at, reverse=True)
    lines = [
        f"{run.run_id:20} {run.state:10} epoch {run.epoch}/{run.epochs_total}  "
        f"val_accuracy {_value(run.metrics.get('val_accuracy'))}  {run.param_id or ''}  {_gpus(run)}".rstrip()
        for run in runs
    ]
    _print(args, runs, "\n".join(lines) if lines else "no managed runs")
    return EXIT_OK


def cmd_run(client: PivotClient, args: argparse.Namespace) -> int:
    run = client.run(args.run_id)
    _print(args, run, json.dumps(_plain(run), indent=2))
    return EXIT_OK


def cmd_cancel(client: PivotClient, args: argparse.Namespace) -> int:
    result = client.cancel(args.run_id)
    _print(args, result, f"{args.run_id}: cancel requested")
    return EXIT_OK


def cmd_infer(client: PivotClient, args: argparse.Namespace) -> int:
    inputs = _load(args.inputs)
    if isinstance(inputs, dict):
        inputs = inputs.get("inputs", inputs.get("pixels"))
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], list):
        inputs = [inputs]  # one bare input
    if not isinstance(inputs, list):
        raise UsageError("the inputs file must hold a list of inputs (lists of numbers), or one input")
    result = client.infer(inputs, param_id=args.param, run_id=args.run)
    _print(args, result, " ".join(str(label) for label in result.outputs.labels or []))
    return EXIT_OK


def cmd_params(client: PivotClient, args: argparse.Namespace) -> int:
    params = client.params(args.param_id)
    if args.output:
        Path(args.output).write_text(json.dumps(_plain(params)))
        print(f"wrote {args.output} ({params.size_bytes} bytes of weights)", file=sys.stderr)
        return EXIT_OK
    print(json.dumps(_plain(params)))
    return EXIT_OK


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError(f"--env {pair!r}: write NAME=VALUE")
        env[name] = value
    return env


def _job_fields(args: argparse.Namespace) -> tuple[list[str], str, dict[str, Any]]:
    """(command, cwd, the other JobSpec fields) of `submit`."""
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UsageError("give the command after --: pivotctl submit -- python train.py")
    fields: dict[str, Any] = {"env": _env(args.env), "nproc_per_node": args.nproc, "priority": args.priority,
                              "retries": args.retries}  # fmt: skip
    for name, value in (("gpus", args.gpus), ("name", args.name), ("max_runtime_s", args.max_runtime)):
        if value is not None:
            fields[name] = value
    return command, os.path.abspath(args.cwd or os.getcwd()), fields


def cmd_submit(client: PivotClient, args: argparse.Namespace) -> int:
    if args.nodes is not None or args.node_hosts:
        return _submit_nodes(args)
    command, cwd, fields = _job_fields(args)
    job = client.submit_job(command, cwd, **fields)
    where = f"position {job.position}" if job.position is not None else job.status
    if not (args.wait or args.follow):
        _print(args, job, f"{job.run_id} {job.status} ({where})")
        return EXIT_OK
    if not args.json:
        print(f"{job.run_id} {job.status} ({where})", file=sys.stderr)
    run = _follow(client, job.run_id, show=args.follow and not args.json)
    _print(args, run, f"{job.run_id} {run.status}" + (f": {run.error}" if run.error else ""))
    return EXIT_OK if run.status == RunState.SUCCEEDED else EXIT_RUN_FAILED


def _submit_nodes(args: argparse.Namespace) -> int:
    """One job per daemon, each one node of a torchrun job that meets at the first host's rendezvous endpoint."""
    hosts: list[str] = args.node_hosts
    if args.nodes is None or args.nodes < 2 or len(hosts) != args.nodes:
        raise UsageError("a multi-node job: --nodes N (at least 2) and --host once per node, N times")
    command, cwd, fields = _job_fields(args)
    rendezvous_id = f"pivot-{secrets.token_hex(6)}"
    submitted: list[tuple[PivotClient, str]] = []
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(target(host, args.token)) for host in hosts]
        endpoint = args.rdzv_endpoint or f"{targets[0].address}:{args.rdzv_port}"
        try:
            for rank, node in enumerate(targets):
                client = stack.enter_context(PivotClient(node.url, node.token, timeout=30))
                rendezvous = {"nnodes": args.nodes, "node_rank": rank, "endpoint": endpoint, "id": rendezvous_id}
                job = client.submit_job(command, cwd, **fields, rendezvous=rendezvous, group=rendezvous_id)
                submitted.append((client, job.run_id))
        except (PivotAPIError, httpx.HTTPError):
            for client, run_id in submitted:  # one node alone would wait out the rendezvous timeout
                with contextlib.suppress(PivotAPIError, httpx.HTTPError):
                    client.cancel_job(run_id)
            raise
        lines = [
            f"{run_id} on {host} (node {rank})"
            for rank, ((_, run_id), host) in enumerate(zip(submitted, hosts, strict=True))
        ]
        summary = {"group": rendezvous_id, "endpoint": endpoint, "runs": [run_id for _, run_id in submitted]}
        if not (args.wait or args.follow):
            _print(args, summary, "\n".join([*lines, f"group {rendezvous_id}, rendezvous at {endpoint}"]))
            return EXIT_OK
        runs = [_follow(client, run_id, show=False) for client, run_id in submitted]
    states = [str(run.status) for run in runs]
    _print(
        args,
        {**summary, "status": states},
        "\n".join(f"{line}: {state}" for line, state in zip(lines, states, strict=True)),
    )
    return EXIT_OK if all(run.status == RunState.SUCCEEDED for run in runs) else EXIT_RUN_FAILED


def _follow(client: PivotClient, run_id: str, *, show: bool) -> Any:
    """Wait for the run to end, printing its log lines as they come when `show`; returns the run."""
    since: float | None = None
    while True:
        run = client.get_run(run_id, steps="none")
        if show:
            for line in client.run_logs(run_id, since=since, tail=1000):
                print(line.message)
                since = line.timestamp
        if run.status in FINAL_STATES:
            return run
        time.sleep(1.0)  # a command line polling its daemon: one request a second


def cmd_queue(client: PivotClient, args: argparse.Namespace) -> int:
    queue = client.job_queue()
    lines = [
        f"{entry.run_id:20} {entry.status:8} {entry.position or '':>4} {entry.kind:7} "
        f"gpus {entry.gpus_requested if entry.gpus_requested is not None else '-'} "
        f"{' '.join(entry.command or [])[:60] or entry.name or ''}".rstrip()
        for entry in queue.data
    ]
    summary = f"{queue.meta.running} running, {queue.meta.queued} queued, {queue.meta.slots} slot(s)"
    _print(args, queue, "\n".join([*lines, summary]))
    return EXIT_OK


def cmd_logs(client: PivotClient, args: argparse.Namespace) -> int:
    if args.follow:
        run = _follow(client, args.run_id, show=True)
        return EXIT_OK if run.status == RunState.SUCCEEDED else EXIT_RUN_FAILED
    lines = client.run_logs(args.run_id, tail=args.tail)
    _print(args, lines, "\n".join(line.message for line in lines))
    return EXIT_OK


def cmd_exp_create(client: PivotClient, args: argparse.Namespace) -> int:
    config = _load(args.config)
    if not isinstance(config, dict):
        raise UsageError(f"{args.config} must hold a JSON object (an experiment config)")
    created = client.create_experiment(args.name, config, description=args.description, tags=args.tag)
    _print(args, created, created.id)
    return EXIT_OK


def cmd_exp_action(client: PivotClient, args: argparse.Namespace) -> int:
    detail = client.experiment_action(args.experiment_id, args.action)
    _print(args, detail, f"{detail.id} {detail.status} ({len(detail.runs)} run(s))")
    return EXIT_OK


def cmd_exp_wait(client: PivotClient, args: argparse.Namespace) -> int:
    try:
        detail = client.wait_experiment(args.experiment_id, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"pivotctl: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    counts = ", ".join(f"{count} {status}" for status, count in detail.results_summary.runs_by_status.items())
    _print(args, detail, f"{detail.id} {detail.status}: {counts or 'no runs'}")
    return EXIT_OK if detail.status == "completed" else EXIT_RUN_FAILED


def cmd_exp_test(client: PivotClient, args: argparse.Namespace) -> int:
    result = client.compare(args.experiment_id, args.groups, args.metric, args.test)
    _print(args, result, f"{result.interpretation.summary} (p = {result.p_value:.4g})")
    return EXIT_OK


def cmd_exp_export(client: PivotClient, args: argparse.Namespace) -> int:
    content = client.export_experiment(args.experiment_id, args.format)
    if args.output:
        Path(args.output).write_bytes(content)
        print(f"wrote {args.output} ({len(content)} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(content)
    return EXIT_OK


def cmd_keys_create(client: PivotClient, args: argparse.Namespace) -> int:
    key = client.create_api_key(args.name, args.scope or ["read"])
    if not args.json:
        print(f"created {key.id} ({key.name}, scopes {','.join(key.scopes)}); "
              "the key is shown only this once:", file=sys.stderr)  # fmt: skip
    _print(args, key.model_dump(mode="json"), key.key)
    return EXIT_OK


def cmd_keys_list(client: PivotClient, args: argparse.Namespace) -> int:
    keys = client.api_keys()
    lines = [
        f"{key.id:20} {key.status:8} {','.join(key.scopes):16} {key.prefix}...  "
        f"last used {key.last_used_at or 'never'}  {key.name}"
        for key in keys
    ]
    _print(args, [key.model_dump(mode="json") for key in keys], "\n".join(lines) if lines else "no API keys")
    return EXIT_OK


def cmd_keys_revoke(client: PivotClient, args: argparse.Namespace) -> int:
    client.revoke_api_key(args.key_id)
    _print(args, {"id": args.key_id, "status": "revoked"}, f"{args.key_id}: revoked")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="pivotctl", description="Train, inspect and query models on pivotd.")
    root.add_argument("--url", help="daemon URL (default: $PIVOT_URL, else the local daemon)")
    root.add_argument("--token", help="bearer token (default: $PIVOT_TOKEN, else the local token file)")
    root.add_argument("--host", help="a box named in ~/.config/pivot/hosts.toml (its url, or ssh to it), or a URL")
    root.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = root.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="queue a training run")
    train.add_argument("architecture", nargs="?", help="architecture JSON file (or {architecture, hyperparams})")
    train.add_argument("--hyperparams", help="hyperparameters JSON file")
    train.add_argument("--model", help="train this stored model instead")
    train.add_argument("--wait", action="store_true", help="follow the run; exit 0 only if it succeeds")
    train.set_defaults(handler=cmd_train)

    runs = commands.add_parser("runs", help="list managed runs, newest first")
    runs.add_argument("--model", help="only this model's runs")
    runs.set_defaults(handler=cmd_runs)

    run = commands.add_parser("run", help="show one run")
    run.add_argument("run_id")
    run.set_defaults(handler=cmd_run)

    submit = commands.add_parser("submit", help="queue a command as a job: pivotctl submit [options] -- CMD ...")
    submit.add_argument("--gpus", type=int, help="whole GPUs (default one per process where GPUs exist, else 0)")
    submit.add_argument("--nproc", type=int, default=1, help="processes per node (above 1: under torchrun)")
    submit.add_argument("--name")
    submit.add_argument("--cwd", help="working directory on the daemon's machine (default: this one)")
    submit.add_argument("--env", action="append", default=[], help="NAME=VALUE; may repeat")
    submit.add_argument("--priority", type=int, default=0, help="higher starts first")
    submit.add_argument("--retries", type=int, default=0)
    submit.add_argument("--max-runtime", type=float, help="seconds; past this the job is stopped and fails")
    submit.add_argument("--wait", action="store_true", help="wait for it to end; exit 0 only if it succeeds")
    submit.add_argument("--follow", action="store_true", help="print its output while waiting (implies --wait)")
    submit.add_argument("--nodes", type=int, help="a multi-node torchrun job: one node per --host")
    submit.add_argument("--host", dest="node_hosts", action="append", default=[],
                        help="with --nodes: a daemon (hosts.toml name or URL) per node, the first hosting the "
                             "rendezvous")  # fmt: skip
    submit.add_argument("--rdzv-port", type=int, default=29400, help="the rendezvous port on the first host")
    submit.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous, when the first host's name is not "
                        "how the others reach it")  # fmt: skip
    submit.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    submit.set_defaults(handler=cmd_submit)

    queue = commands.add_parser("queue", help="running and queued runs, in the order they start")
    queue.set_defaults(handler=cmd_queue)

    logs = commands.add_parser("logs", help="a run's log lines (a job's output)")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the run ends")
    logs.add_argument("--tail", type=int, default=200)
    logs.set_defaults(handler=cmd_logs)

    cancel = commands.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run_id")
    cancel.set_defaults(handler=cmd_cancel)

    infer = commands.add_parser("infer", help="labels for inputs (a JSON file: one input or a list)")
    target = infer.add_mutually_exclusive_group(required=True)
    target.add_argument("--param", help="param_id")
    target.add_argument("--run", help="a succeeded run_id")
    infer.add_argument("inputs", help="JSON file, or - for stdin")
    infer.set_defaults(handler=cmd_infer)

    params = commands.add_parser("params", help="trained parameters as JSON (each layer's type, W and b)")
    params.add_argument("param_id")
    params.add_argument("-o", "--output", help="write to this file instead of stdout")
    params.set_defaults(handler=cmd_params)

    exp = commands.add_parser("exp", help="experiments: create, start, wait, test, export (sweeps included)")
    exp_commands = exp.add_subparsers(dest="exp_command", required=True)
    create_exp = exp_commands.add_parser("create", help="create an experiment from a config JSON file; prints its id")
    create_exp.add_argument("name")
    create_exp.add_argument("config", help='config JSON file ({"type": "sweep", ...} makes it startable), or -')
    create_exp.add_argument("--description")
    create_exp.add_argument("--tag", action="append", default=[])
    create_exp.set_defaults(handler=cmd_exp_create)
    actions = {
        "start": "queue a sweep's runs",
        "pause": "hold its queued runs",
        "resume": "let its runs start again",
        "cancel": "cancel its queued and running runs",
    }
    for action, text in actions.items():
        acting = exp_commands.add_parser(action, help=text)
        acting.add_argument("experiment_id")
        acting.set_defaults(handler=cmd_exp_action, action=action)
    wait = exp_commands.add_parser("wait", help="wait until it ends; exit 0 only if it completed")
    wait.add_argument("experiment_id")
    wait.add_argument("--timeout", type=float, help="seconds; past this exit 1")
    wait.set_defaults(handler=cmd_exp_wait)
    test = exp_commands.add_parser("test", help="a statistical test between groups of its runs (stored)")
    test.add_argument("experiment_id")
    test.add_argument(
        "--groups", nargs="+", required=True, help="group labels, e.g. optimizer.lr=0.1 optimizer.lr=0.01"
    )
    test.add_argument("--metric", required=True)
    test.add_argument("--test", default="two_sample_t_test", help="t_test (Welch), paired_t_test, mann_whitney, anova")
    test.set_defaults(handler=cmd_exp_test)
    export = exp_commands.add_parser("export", help="its export file (JSON or CSV) to stdout or -o FILE")
    export.add_argument("experiment_id")
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("-o", "--output")
    export.set_defaults(handler=cmd_exp_export)

    keys = commands.add_parser("keys", help="manage named API keys (needs the daemon token or an admin key)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("name")
    create.add_argument("--scope", action="append", choices=["read", "write", "admin", "jobs"],
                        help="read (default), write (implies read), admin (implies write), jobs (run commands; "
                             "implies read only); may repeat")  # fmt: skip
    create.set_defaults(handler=cmd_keys_create)
    key_commands.add_parser("list", help="list keys, revoked ones too").set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key: it fails from its next request on")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_keys_revoke)
    for command in [*commands.choices.values(), *key_commands.choices.values(), *exp_commands.choices.values()]:
        # `--json` after the command too; SUPPRESS keeps the one given before it.
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return root


def _target(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str | None, str | None]:
    """URL and token: `--url`/`--token` as given, or the `--host` box's (a tunnel, closed when the command ends, for an
    ssh box; the token from hosts.toml, else the one read over ssh), or `--host URL` with `--token`."""
    if args.host is None:
        return args.url, args.token
    if args.url:
        raise UsageError("give --url or --host, not both")
    node = stack.enter_context(target(args.host, args.token))  # HostsError (a ValueError) names the file and host
    return node.url, node.token


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Callable[[PivotClient, argparse.Namespace], int] = args.handler
    url = args.url or args.host or "the local daemon"
    try:
        with contextlib.ExitStack() as stack:
            base, token = _target(args, stack)
            client = stack.enter_context(PivotClient(base, token, timeout=30))
            url = client.url
            return handler(client, args)
    except UsageError as exc:
        print(f"pivotctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PivotAPIError as exc:
        print(f"pivotctl: {url}: {exc.status}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED if 400 <= exc.status < 500 else EXIT_UNAVAILABLE
    except TunnelError as exc:
        print(f"pivotctl: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BrokenPipeError:
        # stdout closed early (`pivotctl runs | head`): not an error of ours, and not the daemon's.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (httpx.HTTPError, OSError) as exc:
        print(f"pivotctl: cannot reach the daemon at {url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as exc:
        print(f"pivotctl: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
