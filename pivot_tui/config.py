"""Where pivot-tui finds its daemon: flags, then `PIVOT_URL`/`PIVOT_TOKEN`, then `tui.toml` under the XDG
config dir, then the local daemon's `daemon.json` and token file, then http://127.0.0.1:8000."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.locations import DEFAULT_URL, config_dir, local_token_for, read_local_url

CONFIG_FILE = "tui.toml"


@dataclass(frozen=True, slots=True)
class TuiSettings:
    url: str
    token: str | None
    theme: str


def _file_settings(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    section = document.get("tui", document)
    return section if isinstance(section, dict) else {}


def resolve(url: str | None = None, token: str | None = None, theme: str | None = None) -> TuiSettings:
    file = _file_settings(config_dir() / CONFIG_FILE)
    resolved_url = str(url or os.environ.get("PIVOT_URL") or file.get("url") or read_local_url() or DEFAULT_URL)
    resolved_token = token or os.environ.get("PIVOT_TOKEN") or file.get("token") or local_token_for(resolved_url)
    return TuiSettings(
        url=resolved_url.rstrip("/"),
        token=resolved_token,
        theme=theme or os.environ.get("PIVOT_TUI_THEME") or file.get("theme") or "textual-dark",
    )
