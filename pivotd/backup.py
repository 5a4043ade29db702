"""`pivotd backup` and `pivotd restore`: a data directory copied while the daemon runs, and put back.

A backup is itself a data directory: the database copied through SQLite's online backup API (a file copy of a
live WAL database can tear between the main file and its WAL), the token, and the `runs/` artifacts (trained
weights, checkpoints). `pivotd --data-dir BACKUP` serves it as it is; `pivotd restore` puts it in place of a
stopped daemon's directory. Datasets are not copied: they are inputs, not state.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pivotd.datadir import PRIVATE_DIR, PRIVATE_FILE, RUNNING_MARKER, DataDir, make_private
from pivotd.settings import DB_FILE, RUNS_DIR
from pivotd.store.integrity import DatabaseUnusable, check_database
from shared.locations import TOKEN_FILE


class BackupError(RuntimeError):
    """The backup or restore was refused or failed; nothing at the destination was replaced."""


@dataclass(frozen=True, slots=True)
class Copied:
    schema: int
    runs: int
    database_bytes: int
    files: int
    file_bytes: int
    vanished: int
    """Artifact files deleted (by retention, or a run's deletion) between listing and copying them."""

    def describe(self) -> str:
        gone = f"; {self.vanished} deleted meanwhile" if self.vanished else ""
        return (
            f"{_count(self.runs, 'run')}, database {self.database_bytes / 1e6:.1f} MB (schema {self.schema}), "
            f"{_count(self.files, 'artifact file')} {self.file_bytes / 1e6:.1f} MB{gone}"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def backup(data_dir: Path, dest: Path) -> Copied:
    """Copy `data_dir` into `dest` (new or empty), safely while a daemon uses it."""
    source = data_dir / DB_FILE
    if not source.is_file():
        raise BackupError(f"no database at {source}: is --data-dir right?")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty directory; name a new one")
    created = not dest.exists()
    make_private(dest)
    try:
        database = _copy_database(source, dest / DB_FILE)
        _copy_file(data_dir / TOKEN_FILE, dest / TOKEN_FILE)
        files, size, vanished = _copy_tree(data_dir / RUNS_DIR, dest / RUNS_DIR)
    except BaseException:
        # No half-made backup left behind to be mistaken for a good one.
        shutil.rmtree(dest) if created else _empty(dest)
        raise
    return Copied(*database, files, size, vanished)


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def restore(source: Path, data_dir: Path, *, replace: bool = False) -> Copied:
    """Put the backup at `source` (a backup directory, or a database file alone) in place as `data_dir`.

    Refused while a daemon holds `data_dir` (DataDirBusy), and over an existing database unless `replace`."""
    backup_dir = source if source.is_dir() else None
    database = source / DB_FILE if backup_dir is not None else source
    if not database.is_file():
        raise BackupError(f"no database at {database}: name a backup directory or a pivot.db file")
    target = data_dir / DB_FILE
    if target.exists() and target.resolve() == database.resolve():
        raise BackupError(f"{source} is the data directory itself")
    with DataDir.claim(data_dir):
        if target.exists() and not replace:
            raise BackupError(f"{data_dir} already holds a database; pass --force to replace it (back it up first)")
        copied = _copy_database(database, target)
        _copy_file(backup_dir / TOKEN_FILE if backup_dir else None, data_dir / TOKEN_FILE)
        files = size = vanished = 0
        if backup_dir is not None and (backup_dir / RUNS_DIR).is_dir():
            files, size, vanished = _replace_tree(backup_dir / RUNS_DIR, data_dir / RUNS_DIR)
        # The replaced database's unclean-shutdown marker does not describe the restored one.
        (data_dir / RUNNING_MARKER).unlink(missing_ok=True)
    return Copied(*copied, files, size, vanished)


def _copy_database(source: Path, target: Path) -> tuple[int, int, int]:
    """Copy through the backup API into a temporary file, check it, then put it in place of `target`.
    Returns (schema, runs, bytes)."""
    partial = target.with_name(f".{target.name}.partial")
    _remove_database(partial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.close(fd)
    try:
        src = sqlite3.connect(source)  # only read; a read-only open would leave -wal/-shm files behind
        dst = sqlite3.connect(partial)
        try:
            # One step (pages=-1) is one read transaction: a consistent snapshot however busy the daemon is. In
            # steps, every write by the daemon's connection would restart the copy, and busy ingest never ends.
            src.backup(dst)
            runs: int = dst.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            dst.close()
            src.close()
        schema = check_database(partial)  # the copy, not the source: it is what will be opened
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        # A WAL beside the target belongs to the database being replaced; replayed onto the new one, it would
        # corrupt it. It goes first, then the new file takes the name.
        for suffix in ("-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        partial.replace(target)
        _sync_directory(target.parent)
    except (sqlite3.Error, DatabaseUnusable, OSError) as exc:
        _remove_database(partial)
        raise BackupError(f"copying the database failed: {exc}") from exc
    return schema or 0, runs, target.stat().st_size


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _copy_file(source: Path | None, target: Path) -> bool:
    if source is None or not source.is_file():
        return False
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    partial.chmod(PRIVATE_FILE)
    partial.replace(target)
    return True


def _files(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            if not name.startswith("."):  # temporary files being written
                yield Path(directory, name)


def _copy_tree(source: Path, target: Path) -> tuple[int, int, int]:
    """Copy the files under `source` into `target`; returns (files, bytes, vanished)."""
    files = size = vanished = 0
    target.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not source.is_dir():
        return files, size, vanished
    for path in _files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, destination)  # copy_file_range/sendfile: no pass through Python
        except FileNotFoundError:
            vanished += 1
            continue
        destination.chmod(PRIVATE_FILE)
        files += 1
        size += destination.stat().st_size
    return files, size, vanished


def _replace_tree(source: Path, target: Path) -> tuple[int, int, int]:
    incoming = target.with_name(f".{target.name}.restoring")
    shutil.rmtree(incoming, ignore_errors=True)
    counts = _copy_tree(source, incoming)
    shutil.rmtree(target, ignore_errors=True)
    incoming.replace(target)
    return counts


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
