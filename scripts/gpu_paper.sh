#!/usr/bin/env bash
# `make paper` on a borrowed GPU machine (one H100 / H200, 16 cores, python3 with torch, lightning and timm, no
# registry): installs the wheels that scripts/fetch_gpu_wheels.sh put in .whl/, runs the pipeline within LIMIT
# seconds (a stopped run keeps its finished stages: run again to resume while the machine's disk lasts), then packs
# the output folder, without checkpoints (gigabytes), into $OUT: paper-results.tar.gz (MLflow store, stage records,
# report, stage times, log) and paper-artifacts.tar.gz.part00, part01, ... (`cat` them, then `tar -xzf -`), with
# REPORT.md, stage_times.json and the log's end beside them.
#   bash scripts/gpu_paper.sh [pipeline YAML, default experiments/pipeline_paper.yaml]
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-experiments/pipeline_paper.yaml}
LIMIT=${LIMIT:-540}
OUT=${OUT:-runs}
SITE=${SITE:-/tmp/mgc-site}
started=$(date +%s)

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || exit 2
fi
export PYTHONPATH="$PWD:$SITE" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -c "import mlflow, segmentation_models_pytorch, librosa, soundfile, jsonargparse" || {
    echo "packages missing: run scripts/fetch_gpu_wheels.sh where pip reaches the registry, and bring .whl/"; exit 2; }
output=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['output_dir'])" "$CONFIG") || exit 2
mkdir -p "$output" "$OUT"
{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "cores: $(nproc); repository: $PWD (the MLflow store records artifact paths under it)"
    python3 -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)"
} > "$output/device.txt" 2>&1
cat "$output/device.txt"
echo "wheels installed in $(( $(date +%s) - started )) s; pipeline $CONFIG for at most $LIMIT s"

timeout --signal=INT --kill-after=20 "$LIMIT" python3 -m mgc_lightning.cli pipeline "$CONFIG" > "$output/pipeline.log" 2>&1
status=$?
[ $status -eq 124 ] && echo "stopped after $LIMIT s: the finished stages are kept (stage_times.json says which)"
tr '\r' '\n' < "$output/pipeline.log" | grep -v -E '^\s*$|it/s\]|s/it\]|win/s\]|rec/s\]' | tail -n 60

# two archives, none over 15 MB (what a device call brings back per file): the store, records and report; the artifacts
parent=$(dirname "$output"); name=$(basename "$output")
tar -czf "$OUT/paper-results.tar.gz" --exclude="$name/checkpoints" --exclude="$name/mlartifacts" -C "$parent" "$name"
tar -czf - -C "$parent" "$name/mlartifacts" | split -b 15M -d - "$OUT/paper-artifacts.tar.gz.part"
for file in report/REPORT.md stage_times.json; do [ -f "$output/$file" ] && cp "$output/$file" "$OUT/"; done
tail -c 200000 "$output/pipeline.log" > "$OUT/pipeline-log-end.txt"
echo "pipeline exit status $status; packed: $(cd "$OUT" && du -h paper-*.tar.gz* | tr '\t\n' ' '); $(( $(date +%s) - started )) s in all"
exit $status
