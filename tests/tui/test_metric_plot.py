"""MetricPlot's drawing choices, read back from plotext's figure (no terminal needed)."""

from __future__ import annotations

from pivot_tui.model import Series
from pivot_tui.widgets.metric_plot import PLOT_SETS, MetricPlot


def series(steps: range, value: float = 1.0) -> Series:
    curve = Series()
    for step in steps:
        curve.add(step, value)
    return curve


def test_dense_curves_are_drawn_first_and_plots_of_a_run_share_its_step_range() -> None:
    run = {
        "val_loss": series(range(100, 1001, 100)),
        "train/loss": series(range(0, 1001)),  # per batch: dense and noisy
        "train_loss": series(range(100, 1001, 100)),
        "val_accuracy": series(range(57, 1001, 100)),
    }
    plot = MetricPlot("loss", PLOT_SETS["loss"])
    plot.show(run)
    figure = plot.plt.monitor
    assert figure.label[0] == "train/loss"  # underneath: the per-epoch curves stay visible on top
    assert set(figure.label[1:]) == {"train_loss", "val_loss"}
    assert figure.xlim[0] == [0, 1000]  # the accuracy plot of the same run spans the same steps
