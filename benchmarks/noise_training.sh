#!/bin/bash
# Issue #25 item 2, trials A (the field sound model, `--preset demo-real`), B (real backgrounds and hard negatives
# mixed into the demo benchmark, synth/real_mix.py) and C (both): the demo's baseline recipe trained on each, measured beside
# the demo's own baseline on the demo's validation windows and on the real-noise test (benchmarks/noise_training.py).
# BENCHMARKS.md, "Training in real noise", has the numbers. Run from the repository root after `make demo`:
#   bash benchmarks/noise_training.sh [DEMO_DIR=data/demo] [OUT=/tmp/noise]
# SEEDS="1 2" adds those seeds of trial B and of the demo's baseline recipe on the demo's own benchmark (v1).
# ABLATE=1 adds trial B taken apart (seed 0): B1 its real backgrounds alone, B2 its hard negatives alone, B3 all of it
# without the spectral tilt (0 dB/octave) and with the background's level fixed at 10 dB (the middle of B's 0-20 dB).
# Everything it writes goes under OUT (benchmarks, cache, MLflow store, checkpoints); DEMO_DIR is only read.
set -euo pipefail
DEMO=${1:-data/demo}
OUT=${2:-/tmp/noise}
CLIPS=../shared/data/real
PY=".venv/bin/python"
export PYTHONPATH=$PWD MLFLOW_TRACKING_URI=sqlite:///$(realpath -m "$OUT")/mlflow.db
mkdir -p "$OUT/ckpt" "$OUT/v1"

# Trial A: the demo's benchmark with the field sound model (the pipeline's synth stage, preset demo-real)
$PY -m mgc_lightning.cli synth "$OUT/demo-real" --preset demo-real --n 1920 --seed 0 --workers 2 \
  --mask-presets origin --cache-root "$OUT/cache" --quiet
# Trial B: the demo's benchmark (v1) with the training-reserved real files of synth/real_noise.py mixed in
reserved() { $PY -c "from mgc_lightning.synth.real_noise import training_reserved_files as t
print(' '.join(str(f) for f in t('$CLIPS') if '$1' in f.name and f.suffix != '.mat'))"; }
for preset in demo demo-real; do  # trial C: the same mix on the field model
  $PY -m mgc_lightning.cli synth "$OUT/$([ $preset = demo ] && echo demo-realmix || echo demo-real-mix)" \
    --preset $preset --n 1920 --seed 0 --workers 2 --mask-presets origin --cache-root "$OUT/cache" --quiet \
    --backgrounds $(reserved 67416073.) --negative-calls $(reserved FO-) --negative-clicks $(reserved clickwave)
done
BG=(--backgrounds $(reserved 67416073.))
NEG=(--negative-calls $(reserved FO-) --negative-clicks $(reserved clickwave))
ablate() {  # ablate NAME MIX-OPTIONS...: the demo's benchmark (v1) with part of trial B's mix
  $PY -m mgc_lightning.cli synth "$OUT/$1" --preset demo --n 1920 --seed 0 --workers 2 --mask-presets origin \
    --cache-root "$OUT/cache" --quiet "${@:2}"
}
if [ "${ABLATE:-0}" = 1 ]; then
  ablate demo-mix-backgrounds "${BG[@]}"
  ablate demo-mix-negatives "${NEG[@]}"
  ablate demo-mix-flat "${BG[@]}" "${NEG[@]}" --tilt-db-per-octave 0 0 --background-db 10 10
fi

# The validation windows of each benchmark under the demo's split (BENCHMARKS.md, "Commands used below")
val_split() {
  $PY -c "from mgc_lightning.audio.manifest import *; rows = load_manifest('$1')
parts = split_rows(rows, SplitConfig(group_by='recording', fractions=(0.7, 0.15, 0.15), seed=0))
write_manifest([rows[i] for i in parts['val']], '$2')"
}
val_split "$DEMO/manifest.csv" "$OUT/v1/val_split.csv"
val_split "$OUT/demo-real/manifest.csv" "$OUT/demo-real/val_split.csv"
val_split "$OUT/demo-realmix/manifest.csv" "$OUT/demo-realmix/val_split.csv"
val_split "$OUT/demo-real-mix/manifest.csv" "$OUT/demo-real-mix/val_split.csv"

# The demo's baseline recipe (pipeline/stages.py, classifiers(); experiments/pipeline_demo.yaml), one at a time
train() {  # train NAME MANIFEST [SEED]: seed 0 links NAME.ckpt, another NAME-seedN.ckpt
  local seed=${3:-0} link="$OUT/ckpt/$1$([ "${3:-0}" = 0 ] || echo "-seed$3").ckpt"
  [ -e "$link" ] && return
  $PY -m mgc_lightning.cli fit --config experiments/classifier_base.yaml --config experiments/narrow_resnet18.yaml \
    --config experiments/baseline_resnet18.yaml --data.init_args.manifest "$2" --data.init_args.cache_root "$OUT/cache" \
    --data.init_args.preset origin --data.init_args.split_by recording --data.init_args.split_fractions "[0.7, 0.15, 0.15]" \
    --data.init_args.split_seed 0 --seed_everything "$seed" --trainer.logger.init_args.experiment_name noise-training \
    --trainer.logger.init_args.run_name "$1-seed$seed" --trainer.max_epochs 15 --data.init_args.batch_size 32 \
    --trainer.default_root_dir "$OUT/checkpoints" --link-best "$link"
}
train baseline-v2 "$OUT/demo-real/manifest.csv"
train baseline-realmix "$OUT/demo-realmix/manifest.csv"
train baseline-real-mix "$OUT/demo-real-mix/manifest.csv"
SEEDED=()
for seed in ${SEEDS:-}; do
  train baseline-realmix "$OUT/demo-realmix/manifest.csv" "$seed"
  train baseline-v1 "$DEMO/manifest.csv" "$seed"
  SEEDED+=(--model "baseline-v1-seed$seed=$OUT/ckpt/baseline-v1-seed$seed.ckpt"
           --model "baseline-realmix-seed$seed=$OUT/ckpt/baseline-realmix-seed$seed.ckpt"
           --pair "baseline-realmix-seed$seed=baseline-v1-seed$seed")
done
ABLATED=()
if [ "${ABLATE:-0}" = 1 ]; then
  for part in backgrounds negatives flat; do
    train baseline-mix-$part "$OUT/demo-mix-$part/manifest.csv"
    ABLATED+=(--model "baseline-mix-$part=$OUT/ckpt/baseline-mix-$part.ckpt" --pair "baseline-mix-$part=baseline-realmix")
  done
fi

BASE=$($PY -c "import json; print(json.load(open('$DEMO/pipeline/classifier-baseline-resnet18-seed0.json'))['best'])")
$PY benchmarks/noise_training.py --out "$OUT/measures" --clips "$CLIPS" --model demo-baseline-v1="$BASE" \
  --model baseline-v2="$OUT/ckpt/baseline-v2.ckpt" --model baseline-realmix="$OUT/ckpt/baseline-realmix.ckpt" \
  --model baseline-real-mix="$OUT/ckpt/baseline-real-mix.ckpt" "${SEEDED[@]}" "${ABLATED[@]}" \
  --val v1="$OUT/v1/val_split.csv" --val v2="$OUT/demo-real/val_split.csv" \
  --val realmix="$OUT/demo-realmix/val_split.csv" --val v2mix="$OUT/demo-real-mix/val_split.csv"
