"""Locked node_modules for the JavaScript packages the tests run, installed once per package-lock.json.

The install lives in a cache directory shared by every test run on the machine (pytest-xdist workers and
concurrent checkouts included); a file lock makes one process install while the others wait for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pivot-tests"


def installed_package(npm: str, package: Path, name: str) -> Path:
    """A directory holding `package`'s package.json, package-lock.json and its `npm ci`-installed node_modules."""
    lock = (package / "package-lock.json").read_bytes()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{name}-{hashlib.sha256(lock).hexdigest()[:16]}"
    # One lock for every install: they share npm's download cache, and a waiting process finds the finished one.
    with (cache / "install.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (target / "node_modules" / ".package-lock.json").is_file():
            staging = cache / f"{target.name}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for file in ("package.json", "package-lock.json"):
                shutil.copy(package / file, staging / file)
            command = [npm, "ci", "--no-audit", "--no-fund", "--cache", str(cache / "npm")]
            installed = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=300)
            assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
            shutil.rmtree(target, ignore_errors=True)  # an install an older, unlocked run left half done
            staging.rename(target)
    return target
