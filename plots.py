"""Figures: exact match against length, shared by the study, the extrapolation, the logger and the debug tools."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def length_curve_figure(
    curves: dict[str, list[dict[int, float]]], train_max_len: int, title: str = "", ax=None, bucket: int = 1
):
    """Exact match vs length: one line per name (median over its runs, min-max shaded), training range marked.

    bucket > 1 averages each run over lengths [k*bucket, (k+1)*bucket) first, so many lines stay
    readable. Draws into ax if given (for a panel of a larger figure); returns the figure.
    """
    fig, ax = plt.subplots(figsize=(7, 4)) if ax is None else (ax.figure, ax)
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors  # one colour per line
    for i, (name, runs) in enumerate(curves.items()):
        runs = [_bucketed(run, bucket) for run in runs]
        lengths = sorted(set().union(*runs))
        grid = np.array([[run.get(n, np.nan) for n in lengths] for run in runs])
        color, width = palette[i % len(palette)], 2.5 if i == 0 else 1.5  # the first name: thicker, on top
        label = f"{name} (n={len(runs)})"
        ax.plot(lengths, np.nanmedian(grid, 0), ".-", ms=3, color=color, lw=width, zorder=3 - (i > 0), label=label)
        if len(runs) > 1:  # the same colour as its line
            ax.fill_between(lengths, np.nanmin(grid, 0), np.nanmax(grid, 0), color=color, alpha=0.2)
    ax.axvspan(0, train_max_len + 0.5, color="grey", alpha=0.15, label=f"training lengths (<= {train_max_len})")
    ax.set(xlabel="sequence length (tokens)", ylabel="exact match", ylim=(-0.02, 1.02), xlim=(0, None))
    ax.set_title(title or "Counting: generation accuracy by length")
    ax.legend(loc="lower left", **({} if bucket > 1 else {"fontsize": 8}))
    fig.tight_layout()
    return fig


def _bucketed(by_length: dict[int, float], width: int) -> dict[float, float]:
    """Mean accuracy per bucket of `width` lengths, keyed by the mean length it covers (for plotting)."""
    if width <= 1:
        return by_length
    groups: dict[int, list[int]] = {}
    for n in sorted(by_length):
        groups.setdefault(n // width, []).append(n)
    buckets = list(groups.values())
    if len(buckets) > 1 and len(buckets[-1]) < width // 2:  # a lone last length (e.g. 200) joins its neighbours
        buckets[-2:] = [buckets[-2] + buckets[-1]]
    return {float(np.mean(ns)): float(np.mean([by_length[n] for n in ns])) for ns in buckets}
