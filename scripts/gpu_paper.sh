#!/usr/bin/env bash
# `make paper` on a borrowed GPU machine (one H100 / H200, 16 cores, python3 with torch, lightning and timm, no
# registry): installs the wheels that scripts/fetch_gpu_wheels.sh put in .whl/, runs the pipeline until TOTAL seconds
# after the script started less PACK for packing (a stopped run keeps its finished stages and gets a report of the
# runs that finished; run again to resume while the machine is still warm), then packs
# the output folder, without checkpoints (gigabytes), into $OUT: paper-results.tar.gz (MLflow store, stage records,
# report, stage times, log) and paper-artifacts.tar.gz.part00, part01, ... (`cat` them, then `tar -xzf -`), with
# REPORT.md, stage_times.json and the log's end beside them.
#   bash scripts/gpu_paper.sh [pipeline YAML, default experiments/pipeline_paper.yaml]
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-experiments/pipeline_paper.yaml}
TOTAL=${TOTAL:-575}  # a device command may run 600 s: stop the pipeline early enough to pack what it made
PACK=${PACK:-30}
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
    python3 -c "import torch, lightning, timm
print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)"
} > "$output/device.txt" 2>&1
cat "$output/device.txt"
limit=$(( TOTAL - PACK - ($(date +%s) - started) ))
echo "wheels installed in $(( $(date +%s) - started )) s; pipeline $CONFIG for at most $limit s"

timeout --signal=INT --kill-after=10 "$limit" python3 -m mgc_lightning.cli pipeline "$CONFIG" \
    > "$output/pipeline.log" 2>&1
status=$?
if [ $status -eq 124 ]; then
    echo "stopped after $limit s: finished stages are kept (stage_times.json says which); reporting the finished runs"
    experiment=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['experiment'])" "$CONFIG")
    MLFLOW_TRACKING_URI="sqlite:///$PWD/$output/mlflow.db" timeout 15 python3 -m mgc_lightning.cli report \
        --experiment "$experiment" --out "$output/report" >> "$output/pipeline.log" 2>&1
fi
tr '\r' '\n' < "$output/pipeline.log" | grep -v -E '^\s*$|it/s\]|s/it\]|win/s\]|rec/s\]' | tail -n 60

# two archives, none over 15 MB (what a device call brings back per file): the store, records and report; the artifacts
parent=$(dirname "$output"); name=$(basename "$output")
tar -czf "$OUT/paper-results.tar.gz" --exclude="$name/checkpoints" --exclude="$name/mlartifacts" -C "$parent" "$name"
tar -czf - -C "$parent" "$name/mlartifacts" | split -b 15M -d - "$OUT/paper-artifacts.tar.gz.part"
for file in report/REPORT.md stage_times.json; do [ -f "$output/$file" ] && cp "$output/$file" "$OUT/"; done
tail -c 200000 "$output/pipeline.log" > "$OUT/pipeline-log-end.txt"
packed=$(cd "$OUT" && du -h paper-*.tar.gz* | tr '\t\n' ' ')
echo "pipeline exit status $status; packed: $packed; $(( $(date +%s) - started )) s in all"
exit $status
