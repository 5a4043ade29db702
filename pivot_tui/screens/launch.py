"""Provides LaunchDialog: start training from a template or a model JSON file; dismisses with the run id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from shared.client import PivotAPIError
from shared.models.seeds import SEED_001_CNN as DIGITS_CNN
from shared.models.seeds import SEED_003_MLP as DIGITS_MLP
from shared.models.training import Architecture, ArchitectureError, Hyperparams, check_architecture

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp

# Two ready architectures for the shipped 28x28 digits: an MLP and a CNN.
TEMPLATES: dict[str, dict[str, Any]] = {"mlp": DIGITS_MLP, "cnn": DIGITS_CNN}
FIELDS: dict[str, tuple[str, type]] = {
    "epochs": ("3", int),
    "batch_size": ("64", int),
    "lr": ("0.1", float),
    "seed": ("42", int),
    "max_samples": ("4096", int),
}


def check(architecture: dict[str, Any], hyperparams: dict[str, Any]) -> None:
    """The daemon's own rules (shared models), applied before sending; ValueError naming the problem."""
    try:
        spec = Architecture.model_validate(architecture)
        Hyperparams.model_validate(hyperparams)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "model"
        raise ValueError(f"{where}: {error['msg']}") from None
    try:
        check_architecture(spec)  # dimension chaining, softmax last, 10 outputs, linear-layer cap
    except ArchitectureError as exc:
        raise ValueError(f"architecture: {exc}") from None


class LaunchDialog(ReportsFailures, ModalScreen[str | None]):
    """Checks the form before sending it; shows the daemon's own error if it refuses."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    app: PivotApp  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        last = self.app.launch_form
        with Vertical(classes="dialog", id="launch"):
            yield Label("Launch training", classes="dialog-title")
            yield Select([("digits MLP", "mlp"), ("digits CNN", "cnn")], value=last.get("template", "mlp"),
                         id="template")  # fmt: skip
            yield Input(last.get("model-file", ""), placeholder="or a model JSON file (architecture, optionally "
                        "hyperparams)", id="model-file")  # fmt: skip
            with Grid(id="hyperparams"):
                for name, (default, _) in FIELDS.items():
                    yield Label(name)
                    yield Input(last.get(f"hp-{name}", default), id=f"hp-{name}")
                yield Label("optimizer")
                yield Select([(o, o) for o in ("sgd", "adam", "adamw")], value=last.get("hp-optimizer", "sgd"),
                             id="hp-optimizer")  # fmt: skip
            yield Static(id="launch-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch", variant="primary", id="launch-ok")
                yield Button("Cancel", id="launch-cancel")
        yield Footer(compact=True, show_command_palette=False)  # this dialog's keys, not the screen's beneath

    @on(Input.Changed)
    @on(Select.Changed)
    def _edited(self) -> None:
        self.query_one("#launch-error", Static).update("")  # an error about the old values no longer applies
        # Remembered as typed: the next launch is usually a variation of this one.
        form = {field.id: field.value for field in self.query(Input) if field.id}
        self.app.launch_form = form | {select.id: str(select.value) for select in self.query(Select) if select.id}

    def request(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The architecture and hyperparameters from the form; ValueError naming the field when something is
        wrong."""
        path = self.query_one("#model-file", Input).value.strip()
        hyperparams: dict[str, Any] = {}
        if path:
            try:
                document = json.loads(Path(path).expanduser().read_text())
            except OSError as exc:
                raise ValueError(f"model file: {exc.strerror}: {path}") from exc
            except json.JSONDecodeError as exc:
                raise ValueError(f"model file: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
            architecture = document.get("architecture", document) if isinstance(document, dict) else None
            if not isinstance(architecture, dict) or "layers" not in architecture:
                raise ValueError("model file: needs an architecture with 'layers'")
            hyperparams = dict(document.get("hyperparams") or {}) if isinstance(document, dict) else {}
        else:
            architecture = TEMPLATES[str(self.query_one("#template", Select).value)]
        for name, (_, kind) in FIELDS.items():
            raw = self.query_one(f"#hp-{name}", Input).value.strip()
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name}: {raw!r} is not a valid {kind.__name__}") from None
            if value <= 0:
                raise ValueError(f"{name}: must be positive")
            if name == "lr":
                hyperparams["optimizer"] = {"type": str(self.query_one("#hp-optimizer", Select).value), "lr": value}
            else:
                hyperparams[name] = value
        check(architecture, hyperparams)
        return architecture, hyperparams

    @on(Button.Pressed, "#launch-ok")
    @on(Input.Submitted)
    def _launch(self) -> None:
        error = self.query_one("#launch-error", Static)
        try:
            architecture, hyperparams = self.request()
        except ValueError as exc:
            error.update(str(exc))
            return
        error.update("")
        self.submit(architecture, hyperparams)

    @on(Button.Pressed, "#launch-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="launch", exit_on_error=False)
    async def submit(self, architecture: dict[str, Any], hyperparams: dict[str, Any]) -> None:
        try:
            queued = await self.app.client.train(architecture, hyperparams)
        except Unreachable as exc:
            self.query_one("#launch-error", Static).update(exc.message)
            self.notify(exc.message, severity="error")
            return
        except PivotAPIError as exc:
            hint = " (this daemon cannot train)" if exc.status == 404 else ""
            self.query_one("#launch-error", Static).update(f"pivotd refused: {exc.message}{hint}")
            return
        self.dismiss(queued.run_id)
