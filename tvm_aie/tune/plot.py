"""Tuning curves: best cycles found against trials, one panel per task, one line per tuner."""

from __future__ import annotations

from ..atomic import save_figure


def tuning_curves(curves: dict, path: str, optimum: dict | None = None) -> None:
    """``curves[task][tuner] = [best cycles after each trial]`` -> a PNG at ``path``.

    ``optimum[task]`` (the exhaustive optimum, where known) is drawn as a dashed line.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    n = len(curves)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (task, by_tuner) in zip(axes.flat, curves.items()):
        for tuner, curve in sorted(by_tuner.items()):
            ax.plot(range(1, len(curve) + 1), curve, label=tuner)
        if optimum and task in optimum:
            ax.axhline(optimum[task], ls="--", c="gray", lw=1, label="optimum")
            ax.set_ylim(optimum[task] * 0.95, optimum[task] * 2)  # the first trials dwarf the rest
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("trials")
        ax.set_ylabel("best cycles")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
