"""Read the counting program out of a trained model: which head performs which RASP-L step, and what
breaks without it.

    python debug/heads.py --checkpoint CKPT [--prompt "SoS 17 160 >"] [--out DIR] [--per_length 40]

1. heads.png: every layer x head's attention over the answer positions of one long count, with the
   keys the program's selects choose drawn in: SoS, start and end (columns), current and previous
   token (diagonals).
2. Heads as selects: for each select of the count program, the share of answer positions where a
   head puts at least half of its attention on the keys that select chooses (every earlier key holding
   the chosen value; --per_length pairs per length at 70-150), the best head per select, and what each
   head does, on all pairs and on each direction apart (a head that picks the largest number reads
   end on the way up and start on the way down).
3. Interventions: each head mean-ablated in turn (its output replaced by its mean), the value-bias
   slopes set to 0 and flipped, then every pair at 70-150 and 6-60 scored with the kinds of first
   error. Early stops: each head's attention on b's keys where the count really ends, elsewhere, and at
   the positions where the model stops early.
Writes DIR/heads.json, DIR/heads.md and DIR/heads.png (default DIR: next to the checkpoint).
"""

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_generation import (  # noqa: E402
    EOS,
    NUMBER_OFFSET,
    PAD,
    PROMPT_LEN,
    CountingTokenizer,
    encode_batch,
    pairs_for_range,  # noqa: E402
)
from evaluate import CheckpointError, evaluate_pairs, load_checkpoint  # noqa: E402
from model import CountingTransformer  # noqa: E402
from plots import count_heads_figure  # noqa: E402

SELECTS = ("SoS", "start", "end", "current", "previous", "same value", "largest", "smallest")
WHAT = {  # the program step each select serves
    "SoS": "find the example's start",
    "start": "read start (copy it after '>'; compare with end)",
    "end": "read end (compare with start; stop where current = end)",
    "current": "read the current token (step from it)",
    "previous": "read the previous token",
    "same value": "find an earlier copy of the current token (end, at the stop)",
    "largest": "pick the largest number so far (a value comparison)",
    "smallest": "pick the smallest number so far (a value comparison)",
}
MOST = 0.5  # a head "puts most of its attention" on a key when it gives it at least this weight


def select_masks(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Per select, (B, Tq, Tk) True at the keys it chooses for each query, as a RASP select's predicate does:
    every earlier key that holds the chosen value (a copy of start in the answer is start too)."""
    B, T = tokens.shape
    value = np.where(tokens >= NUMBER_OFFSET, tokens - NUMBER_OFFSET, -1)
    place = np.arange(T)
    causal = place[None, :] <= place[:, None]  # (Tq, Tk)
    is_number = value >= 0

    def holding(v: np.ndarray) -> np.ndarray:  # v (B, Tq): keys whose value is v of that query
        return (value[:, None, :] == v[:, :, None]) & is_number[:, None, :] & (v[:, :, None] >= 0) & causal

    biggest = np.maximum.accumulate(value, axis=1)
    least = np.minimum.accumulate(np.where(is_number, value, 10**9), axis=1)
    return {
        "SoS": np.broadcast_to(place == 0, (B, T, T)) & causal,
        "start": holding(np.broadcast_to(value[:, 1:2], (B, T))),
        "end": holding(np.broadcast_to(value[:, 2:3], (B, T))),
        "current": np.broadcast_to(place[None, :] == place[:, None], (B, T, T)),
        "previous": np.broadcast_to(place[None, :] == place[:, None] - 1, (B, T, T)),
        "same value": holding(value) & (place[None, :] < place[:, None]),
        "largest": holding(biggest),
        "smallest": holding(np.where(least < 10**9, least, -1)),
    }


def slopes_of(attn) -> list[float | None]:
    """Each head's value-bias slope in one attention layer; None for a head without one (local, or no bias)."""
    cfg = attn.cfg
    slopes = attn.value_slope.detach().tolist() if cfg.value_bias else []
    return [None] * (cfg.n_head - len(slopes)) + slopes  # the local heads come first and have none


def answer_queries(tokens: np.ndarray) -> np.ndarray:
    """(B, T-1) True at the input positions of tokens[:, :-1] whose next token is an answer token: '>',
    every answer number and the last one, whose next token is EoS."""
    place = np.arange(tokens.shape[1] - 1)[None, :]
    return (place >= PROMPT_LEN - 1) & (tokens[:, 1:] != PAD)


def match_counts(model: CountingTransformer, pairs: np.ndarray, batch: int = 32) -> dict:
    """{"L.H": {select: [answer positions where head H of layer L gives the select's keys >= MOST, positions]}}."""
    hits: dict[str, dict[str, list[int]]] = {}
    for start in range(0, len(pairs), batch):
        part = pairs[start : start + batch]
        full = encode_batch(part[:, 0], part[:, 1])
        tokens, queries = full[:, :-1], answer_queries(full.numpy())
        masks = select_masks(tokens.numpy())
        valid = {name: queries & mask.any(-1) for name, mask in masks.items()}  # positions where a key is chosen
        for layer, w in enumerate(model.eval().attention_maps(tokens)):
            w = w.numpy()
            for head in range(w.shape[1]):
                counts = hits.setdefault(f"{layer}.{head}", {s: [0, 0] for s in SELECTS})
                for name, mask in masks.items():
                    weight = (w[:, head] * mask).sum(-1)  # (B, Tq) on the select's keys
                    counts[name][0] += int((weight[valid[name]] >= MOST).sum())
                    counts[name][1] += int(valid[name].sum())
    return hits


def rates_of(*counts: dict) -> dict:
    """{"L.H": {select: share}} from one or more match_counts results, added together."""
    return {
        h: {s: sum(c[h][s][0] for c in counts) / max(1, sum(c[h][s][1] for c in counts)) for s in SELECTS}
        for h in counts[0]
    }


def match_rates(model: CountingTransformer, pairs: np.ndarray) -> dict:
    """{"L.H": {select: share of answer positions where head H of layer L gives the select's keys >= MOST}}."""
    return rates_of(match_counts(model, pairs))


def best_heads(rates: dict) -> list[dict]:
    """Per select: the head that matches it most often, its rate, and the runner-up."""
    rows = []
    for select in SELECTS:
        ranked = sorted(rates, key=lambda h: -rates[h][select])
        rows.append({"select": select, "head": ranked[0], "rate": rates[ranked[0]][select], "next": ranked[1]})
    return rows


def head_roles(rates: dict) -> dict[str, tuple[str, float]]:
    """Per head: the select it matches best (the program's own steps win ties) and the rate; '' under 50%."""
    roles = {}
    for head, r in rates.items():
        select = max(SELECTS, key=lambda s: (round(r[s], 3), -SELECTS.index(s)))
        roles[head] = (select if r[select] >= 0.5 else "", r[select])
    return roles


@contextmanager
def ablated(model: CountingTransformer, layer: int, head: int, mean: torch.Tensor | None = None):
    """Silence one head: its output (before the output projection) becomes `mean`, or zero."""
    hs = model.cfg.d_model // model.cfg.n_head

    def replace(module, args):
        y = args[0].clone()
        y[..., head * hs : (head + 1) * hs] = 0.0 if mean is None else mean
        return (y,)

    hook = model.blocks[layer].attn.proj.register_forward_pre_hook(replace)
    try:
        yield
    finally:
        hook.remove()


@contextmanager
def slopes(model: CountingTransformer, factor: float):
    """Every value-bias slope times factor (0: no value bias, -1: flipped), restored afterwards."""
    saved = [b.attn.value_slope.detach().clone() for b in model.blocks]
    try:
        with torch.no_grad():
            for b in model.blocks:
                b.attn.value_slope.mul_(factor)
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(model.blocks, saved):
                b.attn.value_slope.copy_(s)


@torch.inference_mode()
def head_means(model: CountingTransformer, pairs: np.ndarray) -> dict[tuple[int, int], torch.Tensor]:
    """Each head's mean output (before the output projection) over every position of these sequences."""
    hs, sums, count = model.cfg.d_model // model.cfg.n_head, {}, 0
    inputs = []
    hooks = [
        b.attn.proj.register_forward_pre_hook(lambda m, args, i=i: inputs.append((i, args[0])))
        for i, b in enumerate(model.blocks)
    ]
    try:
        tokens = encode_batch(pairs[:, 0], pairs[:, 1])[:, :-1]
        model(tokens)
        count = tokens.numel()
    finally:
        for h in hooks:
            h.remove()
    for layer, y in inputs:
        for head in range(model.cfg.n_head):
            sums[layer, head] = y[..., head * hs : (head + 1) * hs].reshape(-1, hs).sum(0) / count
    return sums


def interventions(model: CountingTransformer, sets: dict[str, np.ndarray], means: dict) -> list[dict]:
    """Errors and kinds of first error on each set: intact, each head mean-ablated, value-bias slopes 0 and flipped."""
    plans = [("none", None)]
    plans += [(f"head {layer}.{head} mean-ablated", (layer, head)) for layer, head in means]
    if model.cfg.value_bias:
        plans += [("value-bias slopes 0", 0.0), ("value-bias slopes flipped", -1.0)]
    rows = []
    for name, plan in plans:
        if plan is None:
            context = _nothing()
        elif isinstance(plan, tuple):
            context = ablated(model, *plan, mean=means[plan])
        else:
            context = slopes(model, plan)
        with context:
            rows.append({"intervention": name, **{k: evaluate_pairs(model, p).counts() for k, p in sets.items()}})
        print(f"  {name}: " + ", ".join(f"{k} {r['errors']}/{r['pairs']}" for k, r in rows[-1].items() if k in sets))
    return rows


@contextmanager
def _nothing():
    yield


@torch.inference_mode()
def early_stop_attention(model: CountingTransformer, pairs: np.ndarray, batch: int = 32) -> dict:
    """Each head's mean weight on the keys holding b where the count really ends, at other answer
    positions, and at the early stops (a number due, EoS the argmax); and the (current, b) of each stop."""
    sums: dict[str, np.ndarray] = {}  # head -> [sum, count] for true ends, elsewhere, early stops
    stops = []
    for start in range(0, len(pairs), batch):
        part = pairs[start : start + batch]
        tokens = encode_batch(part[:, 0], part[:, 1])
        pred, target = model(tokens[:, :-1]).argmax(-1).numpy(), tokens[:, 1:].numpy()
        queries = answer_queries(tokens.numpy())
        ends = queries & (target == EOS)  # EoS due next: current = end
        early = queries & (target >= NUMBER_OFFSET) & (pred == EOS)
        kinds = (ends, queries & ~ends & ~early, early)
        rows, cols = np.nonzero(early)
        stops += [[int(tokens[r, c]) - NUMBER_OFFSET, int(part[r, 1])] for r, c in zip(rows, cols)]
        end = select_masks(tokens[:, :-1].numpy())["end"]  # keys holding b: end, and the answer's b
        for layer, w in enumerate(model.eval().attention_maps(tokens[:, :-1])):
            on_end = (w.numpy() * end[:, None]).sum(-1)  # (B, nh, T)
            for head in range(w.shape[1]):
                acc = sums.setdefault(f"{layer}.{head}", np.zeros((3, 2)))
                acc += [[on_end[:, head][k].sum(), k.sum()] for k in kinds]
    names = ("at true ends", "elsewhere", "at early stops")
    heads = {h: {n: float(a[i, 0] / a[i, 1]) if a[i, 1] else float("nan") for i, n in enumerate(names)}
             for h, a in sums.items()}  # fmt: skip
    return {"stops": stops, "heads": heads}


def report(result: dict) -> str:
    """heads.md: the selects table, each head's role, interventions, early stops."""
    lines = ["| select (program step) | best head | share of answer positions | next best |", "|---|---|---|---|"]
    for r in result["best"]:
        rates = result["rates"]
        lines.append(
            f"| {r['select']}: {WHAT[r['select']]} | {r['head']} | {r['rate']:.1%} "
            f"| {r['next']} ({rates[r['next']][r['select']]:.1%}) |"
        )
    roles = {"all pairs": result["roles"], **{f"counting {d}": r for d, r in result["roles_by_direction"].items()}}
    lines += ["", "| head | value-bias slope | " + " | ".join(f"{w}: matches best | share" for w in roles) + " |"]
    lines.append("|---|---|" + "---|---|" * len(roles))
    for h in result["roles"]:
        slope = result["slopes"][h]
        cells = [f"{r[h][0] or 'nothing (under 50%)'} | {r[h][1]:.1%}" for r in roles.values()]
        lines.append(f"| {h} | {'-' if slope is None else f'{slope:+.2f}'} | {' | '.join(cells)} |")
    names = [k for k in result["interventions"][0] if k != "intervention"]
    lines += ["", "| intervention | " + " | ".join(f"{n}: errors / pairs" for n in names) + " | first errors (test): "
              "start / direction / miscount / early stop / no stop |", "|---|" + "---|" * (len(names) + 1)]  # fmt: skip
    for row in result["interventions"]:
        k = row["test"]["kinds"]
        kinds = f"{k['start']} / {k['direction']} / {k['miscount']} / {k['early_stop']} / {k['no_stop']}"
        cells = " | ".join(f"{row[n]['errors']:,} / {row[n]['pairs']:,}" for n in names)
        lines.append(f"| {row['intervention']} | {cells} | {kinds} |")
    stops = result["early_stops"]
    lines += ["", f"Early stops on the test pairs: {len(stops['stops'])}; (current, b) of the first 20: "
              + ", ".join(f"({c}, {b})" for c, b in stops["stops"][:20])]  # fmt: skip
    if stops["stops"]:
        gaps = [b - c for c, b in stops["stops"]]
        widest = result["train_max_gap"]  # the largest b - a in training
        lines[-1] += (f". They fall at {len({tuple(s) for s in stops['stops']})} distinct (current, b) pairs, "
                      f"b - current from {min(gaps)} to {max(gaps)}; {sum(g > widest for g in gaps)} of them "
                      f"further apart than any training pair ({widest})")  # fmt: skip
    lines += ["", "| head | weight on b where the count ends | elsewhere | at early stops |", "|---|---|---|---|"]
    for h, x in stops["heads"].items():
        lines.append(f"| {h} | {x['at true ends']:.2f} | {x['elsewhere']:.2f} | {x['at early stops']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompt", default=None, help="the count drawn (default: the longest test count)")
    parser.add_argument("--out", help="folder for heads.json/.md/.png (default: the checkpoint's folder)")
    parser.add_argument("--per_length", type=int, default=40, help="pairs per length at 70-150 for the matching")
    parser.add_argument("--score_per_length", type=int, default=None, help="interventions: a sample (default all)")
    args = parser.parse_args(argv)
    try:
        model, cfg = load_checkpoint(args.checkpoint)
        d = cfg.data
        tokenizer = CountingTokenizer(d.max_number)
        a = min(17, d.max_number - (d.test_max_len - 6))  # the longest test count, from 17 where it fits
        pair = tokenizer.parse_prompt(args.prompt) if args.prompt else (a, a + d.test_max_len - 6)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    count_heads_figure(model, *pair).savefig(out / "heads.png", dpi=110)  # every head's attention on one count
    sample = pairs_for_range(d.test_min_len, d.test_max_len, d.max_number, args.per_length, 0, d.direction)
    ways = {"up": sample[:, 0] < sample[:, 1], "down": sample[:, 0] > sample[:, 1]} if d.direction == "both" else {}
    parts = {way: sample[keep] for way, keep in ways.items()} or {"all": sample}
    counts = {way: match_counts(model, part) for way, part in parts.items()}
    rates = rates_of(*counts.values())  # a = b never reaches 70-150, so up and down hold every pair
    sets = {
        name: pairs_for_range(lo, hi, d.max_number, args.score_per_length, 0, d.direction)
        for name, (lo, hi) in {
            "in_dist": (d.train_min_len, d.train_max_len),
            "test": (d.test_min_len, d.test_max_len),
        }.items()  # fmt: skip
    }
    print(f"Interventions on {len(sets['in_dist']):,} pairs at {d.train_min_len}-{d.train_max_len} and "
          f"{len(sets['test']):,} at {d.test_min_len}-{d.test_max_len}:")  # fmt: skip
    result = {
        "checkpoint": args.checkpoint,
        "train_max_gap": d.train_max_len - 6,
        "slopes": {f"{i}.{h}": s for i, b in enumerate(model.blocks) for h, s in enumerate(slopes_of(b.attn))},
        "rates": rates,
        "best": best_heads(rates),
        "roles": head_roles(rates),
        "roles_by_direction": {way: head_roles(rates_of(counts[way])) for way in ways},
        "interventions": interventions(model, sets, head_means(model, sample)),
        "early_stops": early_stop_attention(model, sets["test"]),
    }
    (out / "heads.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "heads.md").write_text(report(result))
    print(report(result))
    print(f"Wrote {out}/heads.json, heads.md and heads.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
