"""The TypeScript client (clients/typescript): built with tsc and its `node --test` suite run against real daemons
(seed 002's example included), and its committed generated types checked against the live OpenAPI document.

Both need node 20+ and npm and skip without them (CI installs both, see .ci/run). The package's locked
node_modules are installed once per package-lock.json into a cache directory; each run builds and tests a fresh
copy of the sources, so the checkout is left as it was and concurrent runs do not meet.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_packages import cache_dir, installed_package

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "clients" / "typescript"
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "tsconfig.test.json", "src", "test", "scripts")
SCRIPTS = {
    "build": "tsc -p tsconfig.json",
    "typecheck": "tsc -p tsconfig.test.json",
    "run": "node --test test/*.test.mjs",
}
"""package.json's scripts, run without npm: `run` is `npm test` after its type check."""
REGENERATE = "make ts-types  (or: cd clients/typescript && npm ci && npm run generate)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to build and test the TypeScript client (apt-get install nodejs npm)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"the TypeScript client needs node 20 or later, found {version}")
    return node, npm


def _installed_modules(npm: str) -> Path:
    """clients/typescript's node_modules as its package-lock.json pins them, installed once into the cache."""
    return installed_package(npm, PACKAGE, "ts-client") / "node_modules"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of clients/typescript's sources with the cached node_modules beside them."""
    _, npm = _node_and_npm()
    modules = _installed_modules(npm)
    copy = tmp_path_factory.mktemp("ts-client")
    for name in SOURCES:
        source = PACKAGE / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            shutil.copy(source, copy / name)
    (copy / "node_modules").symlink_to(modules, target_is_directory=True)
    return copy


def _env() -> dict[str, str]:
    """The daemons the client's tests start are this checkout's pivotd, from this interpreter's environment."""
    pivotd = Path(sys.executable).parent / "pivotd"
    assert pivotd.is_file(), f"no pivotd beside {sys.executable}: run `make install`"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PIVOTD": str(pivotd), "PYTHONPATH": path}


def _run(package: Path, command: str) -> subprocess.CompletedProcess[str]:
    """One of package.json's commands (`tsc ...`, `node ...`) as npm runs it: node_modules/.bin on the path."""
    env = _env()
    env["PATH"] = os.pathsep.join((str(package / "node_modules" / ".bin"), env.get("PATH", "")))
    # A glob (`test/*.test.mjs`) expanded as npm's shell would: node 20's --test takes files, not patterns.
    args = [name for arg in command.split() for name in (sorted(map(str, package.glob(arg))) if "*" in arg else [arg])]
    return subprocess.run(args, cwd=package, env=env, capture_output=True, text=True, timeout=400)


def _compiled(package: Path) -> None:
    """`npm run build` (tsc, ESM into dist/) and the type check that starts `npm test` (tsc checks the tests
    against the built package). Both depend on nothing but the sources and the locked node_modules: a copy of
    dist/ is kept per hash of those, and tsc (about 5 s of CPU for both) runs only when they changed."""
    digest = hashlib.sha256()
    for name in SOURCES:
        source = package / name
        for file in sorted(source.rglob("*")) if source.is_dir() else [source]:
            if file.is_file():
                digest.update(f"{file.relative_to(package)}\0".encode() + file.read_bytes() + b"\0")
    cached = cache_dir() / f"ts-client-dist-{digest.hexdigest()[:16]}"
    if not cached.is_dir():
        for script in ("build", "typecheck"):
            done = _run(package, SCRIPTS[script])
            assert done.returncode == 0, done.stdout + done.stderr
        staging = cached.with_name(f"{cached.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(package / "dist", staging)
        with contextlib.suppress(OSError):  # another worker stored the same build first
            staging.rename(cached)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        shutil.copytree(cached, package / "dist")


def test_the_typescript_client_builds_and_passes_its_tests(package: Path) -> None:
    """package.json's `build` and `test`: the build, the tests' type check (see `_compiled`), then node's test
    runner runs the tests, each file against its own real pivotd."""
    scripts = json.loads((package / "package.json").read_text())["scripts"]
    assert (scripts["build"], scripts["test"]) == (SCRIPTS["build"], f"{SCRIPTS['typecheck']} && {SCRIPTS['run']}")
    _compiled(package)
    assert (package / "dist" / "index.js").is_file() and (package / "dist" / "index.d.ts").is_file()
    tested = _run(package, SCRIPTS["run"])
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    counts = dict(re.findall(r"^# (pass|fail) (\d+)$", output, re.MULTILINE))
    assert counts.get("fail") == "0" and int(counts.get("pass", "0")) >= 9, output
    for name in ("seed 002's example", "not_found envelope", "unauthorized", "token goes in ?token="):
        assert re.search(rf"^ok \d+ - .*{re.escape(name)}", output, re.MULTILINE), (name, output)


def test_the_committed_types_match_the_live_openapi_document(package: Path, tmp_path: Path) -> None:
    """src/schema.ts is what `npm run generate` makes from a real daemon's /api/v1/openapi.json now. It fails when a
    route or model changed without regenerating the types."""
    generated = tmp_path / "schema.ts"
    result = subprocess.run(
        ["node", "scripts/generate.mjs", "--out", str(generated)],
        cwd=package, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    committed = (PACKAGE / "src" / "schema.ts").read_text()
    fresh = generated.read_text()
    if fresh != committed:
        diff = difflib.unified_diff(
            committed.splitlines(), fresh.splitlines(), "src/schema.ts (committed)", "generated now", lineterm=""
        )
        shown = "\n".join(list(diff)[:60])
        pytest.fail(f"clients/typescript/src/schema.ts is out of date; regenerate it: {REGENERATE}\n{shown}")
    assert "export interface paths" in fresh and '"/api/v1/training/sessions": {' in fresh
