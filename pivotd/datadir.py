"""The daemon's hold on its data directory: private, locked to one daemon, announced to local clients.

A second pivotd on the same directory (`make run` typed twice, a manual start beside the systemd unit) would
recover the first one's running runs as interrupted, announce itself in `daemon.json` and delete that file on
its way out. So before anything reads or recovers state, the daemon takes an exclusive `flock` on
`pivotd.lock`; the kernel drops it when the process dies, so a crash never leaves a stale lock behind. Only the
holder writes and removes `daemon.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from shared.locations import DAEMON_FILE

log = logging.getLogger(__name__)

LOCK_FILE = "pivotd.lock"
RUNNING_MARKER = "pivotd.running"
"""Present while a daemon runs; found at start, it means the previous one did not stop cleanly."""
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class DataDirError(RuntimeError):
    """The data directory cannot be used; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The daemon holding a data directory, as far as its lock file and announcement tell."""

    pid: int | None
    url: str | None

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "pid unknown"
        return f"{pid}, {self.url}" if self.url else f"{pid}, still starting"


class DataDirBusy(DataDirError):
    def __init__(self, path: Path, holder: Holder) -> None:
        super().__init__(f"another pivotd ({holder.describe()}) is using the data directory {path}")
        self.holder = holder


def make_private(path: Path) -> None:
    """Create `path` as a directory only its owner can enter, or tighten an existing one to that.

    Refused: a directory other users may write to (`/tmp`, a shared folder), where they could plant files or
    links for the daemon to open, and one whose mode cannot be changed."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise DataDirError(f"cannot create the data directory {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise DataDirError(f"the data directory {path} is not a directory")
    if info.st_mode & (stat.S_IWOTH | stat.S_ISVTX):
        raise DataDirError(f"the data directory {path} is writable by other users; give pivotd a directory of its own")
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR:
        try:
            path.chmod(PRIVATE_DIR)
        except OSError as exc:
            raise DataDirError(f"cannot make the data directory {path} private (mode 0700): {exc.strerror}") from exc
        log.info("data directory %s was mode %o; now 0700", path, stat.S_IMODE(info.st_mode))
    for child in path.iterdir():  # files an older pivotd left readable by others
        with contextlib.suppress(OSError):
            mode = child.lstat().st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                child.chmod(PRIVATE_FILE)


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600 from the first byte whatever the umask."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE)  # O_CREAT's mode does not apply to a file left by a crash
        handle.write(text)
    temporary.replace(path)


def _read_holder(path: Path, lock_text: str) -> Holder:
    pid = int(lock_text) if lock_text.strip().isdigit() else None
    url = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        announced = json.loads((path / DAEMON_FILE).read_text())
        if announced.get("pid") == pid:  # not a file a crashed predecessor left
            url = announced.get("url")
    return Holder(pid, url if isinstance(url, str) else None)


class DataDir:
    """An exclusive hold on a data directory; `claim` it, `announce` the URL once listening, `release` it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._announced = False

    @classmethod
    def claim(cls, path: Path) -> DataDir:
        """Make `path` private and lock it; DataDirBusy (naming the holder) when another daemon has it."""
        make_private(path)
        # No O_TRUNC: the file may be the holder's, and its pid is what the refusal reports.
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd) as handle:
                raise DataDirBusy(path, _read_holder(path, handle.read())) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def announce(self, url: str) -> None:
        """Write `daemon.json` so local clients (SDK, TUI, pivotctl) find this daemon without configuration."""
        if self._fd is None:
            raise RuntimeError("announce() after release()")
        write_private(self.path / DAEMON_FILE, json.dumps({"url": url, "pid": os.getpid()}))
        self._announced = True

    def release(self) -> None:
        """Withdraw the announcement (only this daemon's own) and unlock. Safe to call twice."""
        if self._fd is None:
            return
        if self._announced:
            (self.path / DAEMON_FILE).unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
