"""Provides InferenceDialog: a real digit, drawn with half blocks, and what a trained run makes of it."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from shared.models.datasets import DigitSample
from shared.models.registry import PixelInference


def digit_art(pixels: list[float], width: int = 28) -> Text:
    """Two pixel rows per text row: the upper pixel is the glyph, the lower one the background."""
    art = Text()
    for top in range(0, len(pixels) // width, 2):
        for column in range(width):
            upper = pixels[top * width + column]
            lower = pixels[(top + 1) * width + column] if (top + 1) * width < len(pixels) else 0.0
            shade = [int(40 + 215 * value) for value in (upper, lower)]
            art.append("▀", Style(color=f"rgb({shade[0]},{shade[0]},{shade[0]})",
                                  bgcolor=f"rgb({shade[1]},{shade[1]},{shade[1]})"))  # fmt: skip
        art.append("\n")
    return art


class InferenceDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("i", "dismiss(None)", "Close", show=False)]

    def __init__(self, run_id: str, sample: DigitSample, answer: PixelInference) -> None:
        super().__init__()
        self.run_id, self.sample, self.answer = run_id, sample, answer

    def compose(self) -> ComposeResult:
        ranked = sorted(enumerate(self.answer.probabilities), key=lambda item: -item[1])[:3]
        verdict = "right" if self.answer.label == self.sample.label else "wrong"
        summary = Text.assemble(
            (f"predicted {self.answer.label}", "bold"),
            f"  (true label {self.sample.label}: ",
            (verdict, "bold green" if verdict == "right" else "bold red"),
            ")\n\n",
            *[f"  {digit}: {p:6.1%}\n" for digit, p in ranked],
            (f"\ndigit #{self.sample.index} of the shipped set", "dim"),
        )
        with Vertical(classes="dialog", id="inference"):
            yield Label(f"Inference with {self.run_id}", classes="dialog-title")
            with Horizontal(id="inference-body"):
                yield Static(digit_art(self.sample.pixels), id="digit")
                yield Static(summary, id="verdict")
