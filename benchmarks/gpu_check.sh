#!/usr/bin/env bash
# The seed-size presets on one GPU, in one go, from the repository root:
#   bash benchmarks/gpu_check.sh outputs/gpu_check           # a GPU machine: installs, times, trains, scores
#   SMOKE=1 bash benchmarks/gpu_check.sh /tmp/gpu_smoke      # a minute on CPU: every step at a tiny size
# 1. training tokens/s and step time of counting_config's model at 32-true, 16-mixed and bf16-mixed
#    (the progress lines of a short run; they leave evaluation out);
# 2. counting_config seeds 0 and 1, seed_system seed 0 and paper_count (the fitted standard setup) at the
#    paper's scale (6 layers, 8 heads, width 512) seed 0, trained to the end of their schedules;
# 3. each run's chosen checkpoint, scored by the run itself on every pair of 6-60, 70-150 and 151-200.
# Everything lands in OUT: one folder per run, timing.txt, scores.md.
set -euo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT/logs"
ARGS=(--accelerator gpu --logger none)
PRECISIONS=(32-true 16-mixed bf16-mixed)
TIMING_STEPS=300 TIMING_LOG=25
if [[ -n "${SMOKE:-}" ]]; then  # the same path on CPU: tiny model, a few steps, no fp16 (CPU has none)
  ARGS=(--accelerator cpu --logger none model.n_layer=1 model.d_model=32 model.d_ff=64 model.n_head=2
    model.local_heads=1 train.max_steps=4 train.eval_every=4 train.log_every=2 train.warmup_steps=1
    data.n_ood_val_per_length=1 data.n_test_per_length=1 data.n_val=20 data.test_max_len=80 data.data_dir="$OUT/data")
  PRECISIONS=(32-true bf16-mixed)
  TIMING_STEPS=6 TIMING_LOG=2
else
  pip install -q -r requirements.txt
  python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
fi

started=$SECONDS
: >"$OUT/timing.txt"
for p in "${PRECISIONS[@]}"; do
  python train_lightning.py --config counting_config --precision "$p" --output_dir "$OUT/timing_$p" --overwrite \
    "${ARGS[@]}" train.max_steps=$TIMING_STEPS train.eval_every=100000 train.log_every=$TIMING_LOG >"$OUT/logs/timing_$p.log" 2>&1
  # median tokens/s and step time over the progress lines after the first (warm-up)
  python - "$p" "$OUT/logs/timing_$p.log" >>"$OUT/timing.txt" <<'EOF'
import re, statistics, sys
lines = re.findall(r"([\d,]+) tok/s", open(sys.argv[2]).read())[1:] or ["nan"]
print(f"{sys.argv[1]}: {statistics.median(float(x.replace(',', '')) for x in lines):,.0f} tok/s (median of {len(lines)} progress lines)")
EOF
done
cat "$OUT/timing.txt"

PAPER_SCALE=(model.n_layer=6 model.n_head=8 model.d_model=512 model.d_ff=2048)
for run in counting_config:0 counting_config:1 seed_system:0 paper_count:0; do
  cfg=${run%:*} seed=${run#*:} extra=()
  [[ $cfg == paper_count && -z "${SMOKE:-}" ]] && extra=("${PAPER_SCALE[@]}")
  [[ $cfg == paper_count && -n "${SMOKE:-}" ]] && extra=(data.data_dir="$OUT/data_up")  # its own, up-only splits
  t0=$SECONDS
  python train_lightning.py --config "$cfg" --seed "$seed" --output_dir "$OUT/${cfg}_seed$seed" --overwrite \
    "${ARGS[@]}" "${extra[@]}" >"$OUT/logs/${cfg}_seed$seed.log" 2>&1
  echo "$cfg seed $seed: $((SECONDS - t0)) s wall; $(tail -1 "$OUT/logs/${cfg}_seed$seed.log")" | tee -a "$OUT/timing.txt"
done

echo "| run | in-dist 6-60: errors / pairs | test 70-150 | 151-200 |" >"$OUT/scores.md"
echo "|---|---|---|---|" >>"$OUT/scores.md"
for dir in "$OUT"/*_seed*; do
  python - "$dir" >>"$OUT/scores.md" <<'EOF'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
sets = json.loads((d / "summary.json").read_text())["sets"]
cells = [f"{sets[k]['errors']:,} / {sets[k]['pairs']:,}" if k in sets else "-" for k in ("in_distribution", "test", "far")]
print(f"| {d.name} | " + " | ".join(cells) + " |")
EOF
done
cat "$OUT/scores.md"
echo "gpu_check done in $((SECONDS - started)) s"
