"""Import boundaries: a laptop installs the TUI without torch or the server stack; scripts import
`shared` without pulling in the daemon. Checked in fresh interpreters so nothing is cached."""

from __future__ import annotations

import subprocess
import sys

SERVER_STACK = ("fastapi", "starlette", "uvicorn", "aiosqlite", "torch", "textual", "pivotd", "pivot_tui")


def modules_after(statement: str) -> set[str]:
    """The top-level packages loaded by `statement` in a fresh interpreter."""
    return {name.split(".")[0] for name in all_modules_after(statement)}


def all_modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


SHARED_ENTRY_POINTS = (
    "shared",
    "shared.models",
    "shared.client",
    "shared.locations",
    "shared.samples",
    "shared.runtime",
    "shared.models.seeds",
)


def test_shared_imports_no_server_stack_or_torch() -> None:
    # One interpreter imports them all: what they load together includes what each loads alone, so none of them
    # brings in the stack if their union does not (an interpreter each cost 0.2 to 0.3 s of CPU apiece).
    assert not modules_after("import " + ", ".join(SHARED_ENTRY_POINTS)) & set(SERVER_STACK)


def test_tui_entry_point_imports_no_server_stack_or_torch() -> None:
    assert not modules_after("import pivot_tui.cli") & {"fastapi", "uvicorn", "aiosqlite", "torch", "pivotd"}


def test_daemon_does_not_import_torch_scipy_or_prometheus_client() -> None:
    # Training workers import torch in their own process; the daemon stays light (about 1 s and 225 MB saved).
    # scipy waits for the first statistical comparison (it was half of the daemon's import time), and
    # prometheus_client for the first scrape of /metrics.
    loaded = modules_after("import pivotd.app, pivotd.server, pivotd.cli")
    assert not loaded & {"torch", "scipy", "prometheus_client"}


def test_cli_help_backup_restore_and_a_refused_start_load_no_store_internals_or_server_stack() -> None:
    """`pivotd --help`, `pivotd backup`/`restore` and a start refused at its data directory or database check need
    sqlite3 and the schema version: `pivotd.store`'s names load when first used, and the server stack after the
    checks. (One interpreter for all: what they load together includes what `pivotd.cli` loads alone.)"""
    loaded = all_modules_after("import pivotd.cli, pivotd.backup, pivotd.datadir, pivotd.logs, pivotd.store.integrity")
    assert {name for name in loaded if name.startswith("pivotd.store.")} == {
        "pivotd.store.integrity",
        "pivotd.store.schema",
    }
    assert not {name.split(".")[0] for name in loaded} & {"numpy", "aiosqlite", "fastapi", "uvicorn", "torch"}
