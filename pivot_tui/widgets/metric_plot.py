"""Provides MetricPlot: live curves of a run's scalars (train vs val), downsampled to the plot's width."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from pivot_tui.model import Series

# Curves drawn together: a metric and its validation twin share a plot.
PLOT_SETS: dict[str, tuple[str, ...]] = {
    "loss": ("train_loss", "val_loss", "train/loss", "val/loss", "loss"),
    "accuracy": ("train_accuracy", "val_accuracy", "train/accuracy", "val/accuracy", "accuracy"),
    "learning rate": ("learning_rate", "lr"),
}


class MetricPlot(PlotextPlot):
    def __init__(self, title: str, names: tuple[str, ...], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.title = title
        self.names = names

    def show(self, series: dict[str, Series], cursor_step: int | None = None, fallback: bool = False) -> bool:
        """Draw this plot's curves; with `fallback`, a plot with none of them shows another set the run has.
        False when it has no points to draw."""
        if fallback and not any(series.get(name) and series[name].steps for name in self.names):
            for title, names in PLOT_SETS.items():
                if title != "loss" and any(series.get(name) and series[name].steps for name in names):
                    self.title, self.names = title, names
                    break
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        width = max(10, self.size.width - 12)
        present = [name for name in self.names if name in series and series[name].steps]
        # Densest first: a per-batch curve drawn last would cover the per-epoch curves under its noise.
        present.sort(key=lambda name: -len(series[name].steps))
        for name in present:
            steps, values = series[name].downsampled(width)
            # Quadrant blocks, not braille: fonts that draw braille wider than a cell pushed the curve's end
            # past the frame.
            plt.plot(steps, values, label=name, marker="hd")
        if not present:
            plt.title(f"{self.title}: no points yet")
        else:
            # Every plot of a run spans the run's steps, so the loss and accuracy plots line up.
            first = min(s.steps[0] for s in series.values() if s.steps)
            last = max(s.steps[-1] for s in series.values() if s.steps)
            if last > first:
                plt.xlim(first, last)
            if cursor_step is not None:
                plt.vline(cursor_step, "red")
        plt.xlabel("step")
        self.refresh()
        return bool(present)
