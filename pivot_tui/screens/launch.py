"""Provides LaunchDialog: start training from a template or a model JSON file, or submit a command as a job;
dismisses with the run id."""

from __future__ import annotations

import json
import shlex
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
from shared.models.jobs import JobSpec
from shared.models.seeds import SEED_001_CNN as DIGITS_CNN
from shared.models.seeds import SEED_003_MLP as DIGITS_MLP
from shared.models.training import Architecture, ArchitectureError, Hyperparams, check_architecture

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp

# Two ready architectures for the shipped 28x28 digits: an MLP and a CNN.
TEMPLATES: dict[str, dict[str, Any]] = {"mlp": DIGITS_MLP, "cnn": DIGITS_CNN}
JOB = "job"
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


class FormSelect(Select[str], inherit_bindings=False):
    """A Select that leaves `enter` to the form (launch, as in every other field); space and the arrows open it."""

    BINDINGS = [Binding("down,space,up", "show_overlay", "Show menu", show=False)]


class LaunchDialog(ReportsFailures, ModalScreen[str | None]):
    """Checks the form before sending it; shows the daemon's own error if it refuses."""

    BINDINGS = [Binding("enter", "launch", "Launch"), Binding("escape", "dismiss(None)", "Cancel")]
    app: PivotApp  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        last = self.app.launch_form
        with Vertical(classes="dialog", id="launch"):
            yield Label("Launch training", classes="dialog-title")
            yield FormSelect([("digits MLP", "mlp"), ("digits CNN", "cnn"), ("a command (job)", JOB)],
                             value=last.get("template", "mlp"), id="template")  # fmt: skip
            yield Input(last.get("model-file", ""), placeholder="or a model JSON file (architecture, optionally "
                        "hyperparams)", id="model-file", classes="training")  # fmt: skip
            with Grid(id="job-fields", classes="job"):
                yield Label("command")
                yield Input(last.get("job-command", ""), placeholder="python train.py --lr 3e-4", id="job-command",
                            classes="wide")  # fmt: skip
                yield Label("directory")
                yield Input(last.get("job-cwd", str(Path.cwd())), id="job-cwd", classes="wide")
                yield Label("GPUs")
                yield Input(last.get("job-gpus", ""), placeholder="default", id="job-gpus")
                yield Label("name")
                yield Input(last.get("job-name", ""), placeholder="optional", id="job-name")
            with Grid(id="hyperparams", classes="training"):
                for name, (default, _) in FIELDS.items():
                    yield Label(name)
                    yield Input(last.get(f"hp-{name}", default), id=f"hp-{name}")
                yield Label("optimizer")
                yield FormSelect([(o, o) for o in ("sgd", "adam", "adamw")], value=last.get("hp-optimizer", "sgd"),
                                 id="hp-optimizer")  # fmt: skip
            yield Static(id="launch-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch", variant="primary", id="launch-ok")
                yield Button("Cancel", id="launch-cancel")
        yield Footer(compact=True, show_command_palette=False)  # this dialog's keys, not the screen's beneath

    def on_mount(self) -> None:
        self._show_fields()

    @on(Select.Changed, "#template")
    def _show_fields(self) -> None:
        """A command has no architecture or hyperparameters: only the fields of what is chosen show."""
        job = self._is_job()
        for part in self.query(".training"):
            part.display = not job
        for part in self.query(".job"):
            part.display = job
        self.query_one(".dialog-title", Label).update("Submit a command as a job" if job else "Launch training")

    def _is_job(self) -> bool:
        return self.query_one("#template", Select).value == JOB

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
    def action_launch(self) -> None:
        error = self.query_one("#launch-error", Static)
        if self._is_job():
            try:
                command, cwd, fields = self.job_request()
            except ValueError as exc:
                error.update(str(exc))
                return
            error.update("")
            self.submit_job(command, cwd, fields)
            return
        try:
            architecture, hyperparams = self.request()
        except ValueError as exc:
            error.update(str(exc))
            return
        error.update("")
        self.submit(architecture, hyperparams)

    def job_request(self) -> tuple[list[str], str, dict[str, Any]]:
        """The command (split as a shell would, run without one), its directory and the other fields, checked
        with the daemon's own `JobSpec`; ValueError naming the field when something is wrong."""
        value = {
            name: self.query_one(f"#job-{name}", Input).value.strip() for name in ("command", "cwd", "gpus", "name")
        }
        try:
            command = shlex.split(value["command"])
        except ValueError as exc:
            raise ValueError(f"command: {exc}") from None
        if not command:
            raise ValueError("command: what to run, e.g. python train.py --lr 3e-4")
        fields: dict[str, Any] = {}
        if value["gpus"]:
            if not value["gpus"].isdigit():
                raise ValueError(f"GPUs: {value['gpus']!r} is not a whole number")
            fields["gpus"] = int(value["gpus"])
        if value["name"]:
            fields["name"] = value["name"]
        try:
            JobSpec.model_validate({"command": command, "cwd": value["cwd"], **fields})
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = {"cwd": "directory", "gpus": "GPUs"}.get(str(error["loc"][0]), str(error["loc"][0]))
            raise ValueError(f"{where}: {error['msg']}") from None
        return command, value["cwd"], fields

    @work(exclusive=True, group="launch", exit_on_error=False)
    async def submit_job(self, command: list[str], cwd: str, fields: dict[str, Any]) -> None:
        try:
            accepted = await self.app.client.submit_job(command, cwd, **fields)
        except PivotAPIError as exc:
            self._refused(exc, "this daemon runs no jobs")
            return
        self.dismiss(accepted.run_id)

    @on(Button.Pressed, "#launch-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="launch", exit_on_error=False)
    async def submit(self, architecture: dict[str, Any], hyperparams: dict[str, Any]) -> None:
        try:
            queued = await self.app.client.train(architecture, hyperparams)
        except PivotAPIError as exc:
            self._refused(exc, "this daemon cannot train")
            return
        self.dismiss(queued.run_id)

    def _refused(self, exc: PivotAPIError, missing_feature: str) -> None:
        """Why the daemon did not take it, under the form; a daemon that cannot be reached is also a notice."""
        if isinstance(exc, Unreachable):
            self.query_one("#launch-error", Static).update(exc.message)
            self.notify(exc.message, severity="error")
            return
        hint = f" ({missing_feature})" if exc.status == 404 else ""
        self.query_one("#launch-error", Static).update(f"pivotd refused: {exc.message}{hint}")
