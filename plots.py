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


def heads_figure(weights: list[np.ndarray], first_query: int, title: str):
    """A grid of heatmaps, one per layer (rows) x head (columns): attention (nh, T, T) of each layer over the
    queries from first_query on. The key axis is stretched near the prompt (symlog), so SoS, start and end
    (keys 0, 1, 2, marked on top) are wide columns; the current and the previous token are the dotted diagonals."""
    n_layer, n_head, T = len(weights), weights[0].shape[0], weights[0].shape[-1]
    fig, axes = plt.subplots(n_layer, n_head, figsize=(2.8 * n_head + 0.6, 2.5 * n_layer + 0.9), squeeze=False)
    queries = np.arange(first_query, T)
    keys = np.arange(T + 1) - 0.5  # cell edges
    for layer, w in enumerate(weights):
        for head in range(n_head):
            ax = axes[layer, head]
            for offset, color, name in ((0, "tab:orange", "current"), (1, "tab:purple", "previous")):
                ax.plot(queries - offset, queries, ":", color=color, lw=1.0, zorder=0, label=name)
            cells = np.ma.masked_less(w[head, first_query:], 0.02)  # near-zero weights left clear
            ax.pcolormesh(keys, np.arange(first_query, T + 1) - 0.5, cells, cmap="Greys", vmin=0, vmax=1, zorder=1)
            ax.set_xscale("symlog", linthresh=8, linscale=1.5)
            ax.set_xlim(-0.5, T - 0.5)
            ax.set_ylim(T - 0.5, first_query - 0.5)
            for key, color, name in ((0, "tab:blue", "SoS"), (1, "tab:green", "start"), (2, "tab:red", "end")):
                ax.plot([key], [first_query - 0.5], "v", color=color, ms=6, clip_on=False, zorder=3, label=name)
            ax.set_title(f"layer {layer}, head {head}", fontsize=10, pad=8)
            ax.tick_params(labelsize=7)
            ax.set_xticks([0, 1, 2, 3, 10, 30, 100])
            ax.set_xticklabels(["0", "", "2", "", "10", "30", "100"])
            if head == 0:
                ax.set_ylabel("query position", fontsize=8)
            if layer == n_layer - 1:
                ax.set_xlabel("key position", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig
