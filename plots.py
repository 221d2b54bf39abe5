"""Figures: exact match against length, shared by the study, the extrapolation, the logger and the debug tools."""

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data_generation import PROMPT_LEN, encode_batch  # noqa: E402

Counts = dict[int, tuple[int, int]]  # length -> (errors, pairs) of one run


@dataclass
class Curve:
    """One line of a length plot: a model's runs (one per seed), drawn as their median."""

    label: str  # in words, for the legend
    runs: list[Counts]
    color: str = "tab:blue"
    headline: bool = False  # drawn thickest and on top
    style: dict = field(default_factory=dict)


def counts_of(by_length: dict) -> Counts:
    """A record's {"L": {"pairs": n, "errors": e}} as {L: (e, n)}."""
    return {int(n): (c["errors"], c["pairs"]) for n, c in by_length.items()}


def _bucketed(run: Counts, width: int) -> dict[float, float]:
    """Error rate per bucket of `width` lengths (errors and pairs summed), keyed by the bucket's mean length;
    a lone last length (e.g. 200) joins the bucket before it."""
    groups: dict[int, list[int]] = {}
    for n in sorted(run):
        groups.setdefault(n // width if width > 1 else n, []).append(n)
    buckets = list(groups.values())
    if width > 1 and len(buckets) > 1 and len(buckets[-1]) < width // 2:
        buckets[-2:] = [buckets[-2] + buckets[-1]]
    return {float(np.mean(ns)): sum(run[n][0] for n in ns) / sum(run[n][1] for n in ns) for ns in buckets}


def length_panel(ax, curves: list[Curve], train_max_len: int | None, title: str, log_errors: bool, bucket: int = 10,
                 xticks=(6, 60, 70, 150, 200), log_x: bool = False) -> None:  # fmt: skip
    """Error rate (log_errors: log scale, 0 errors drawn on the floor) or exact match against length: each curve
    the median over its runs, a min-max band where it has 5 or more; the training lengths shaded."""
    floor = 3e-4  # where a bucket with no error is drawn on the log scale
    if log_x:
        ax.set_xscale("log")
    shortest, longest = min(min(run) for c in curves for run in c.runs), max(max(run) for c in curves for run in c.runs)
    ax.set_xlim(shortest * 0.85, longest * 1.15) if log_x else ax.set_xlim(0, longest + 5)
    for curve in sorted(curves, key=lambda c: c.headline):  # the headline last, so on top
        runs = [_bucketed(run, bucket) for run in curve.runs]
        lengths = sorted(set().union(*runs))
        grid = np.array([[run.get(n, np.nan) for n in lengths] for run in runs])  # error rates
        shown = np.maximum(grid, floor) if log_errors else 1 - grid
        width = 3.2 if curve.headline else 1.6
        label = f"{curve.label} ({len(runs)} seed{'s' * (len(runs) > 1)})"
        ax.plot(lengths, np.nanmedian(shown, 0), "-", color=curve.color, lw=width, zorder=3 + curve.headline,
                label=label, **curve.style)  # fmt: skip
        if len(runs) >= 5:
            ax.fill_between(lengths, np.nanmin(shown, 0), np.nanmax(shown, 0), color=curve.color, alpha=0.15, lw=0)
    if train_max_len:  # the training lengths, shaded
        ax.axvspan(ax.get_xlim()[0], train_max_len + 0.5, color="grey", alpha=0.12, lw=0)
        ax.axvline(train_max_len + 0.5, color="grey", lw=0.8)
        ax.text(train_max_len, 0.97, " trained up to here", transform=ax.get_xaxis_transform(), ha="right",
                va="top", fontsize=9, color="dimgrey")  # fmt: skip
    ax.set_xticks(list(xticks))
    ax.set_xticklabels([f"{x:,}" for x in xticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sequence length (tokens)")
    if log_errors:
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.7, 1.2)
        ax.set_yticks([floor, 1e-3, 1e-2, 1e-1, 1])
        ax.set_yticklabels(["0 errors", "0.1%", "1%", "10%", "100%"])
        ax.set_ylabel("answers wrong (error rate)")
    else:
        ax.set(ylim=(-0.02, 1.02), ylabel="exact match")
    ax.set_title(title, fontsize=12, loc="left")
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)


def length_curve_figure(counts: Counts, train_max_len: int, title: str):
    """One run's exact match by length (the loggers' image at each evaluation)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    length_panel(ax, [Curve("this run", [counts], headline=True)], train_max_len, title, log_errors=False, bucket=1,
                 xticks=sorted({min(counts), train_max_len, max(counts)}))  # fmt: skip
    fig.tight_layout()
    return fig


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


def count_heads_figure(model, a: int, b: int):
    """heads_figure for the count `SoS a b >` as the model stands (its train/eval mode is restored)."""
    tokens = encode_batch([a], [b])[:, :-1].to(next(model.parameters()).device)
    was_training = model.training
    weights = [w[0].float().cpu().numpy() for w in model.eval().attention_maps(tokens)]  # per layer (nh, T, T)
    model.train(was_training)
    return heads_figure(weights, PROMPT_LEN - 1, f"SoS {a} {b} >: attention of every head")
