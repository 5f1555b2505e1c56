# Two commands set everything up: `make install`, then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MGC := $(VENV)/bin/mgc
export HF_HUB_OFFLINE := 1

# The benchmark the training targets use; point BENCH at another folder built with `mgc synth` to change it.
BENCH ?= data/bench-demo
HQ_COUNT ?= 200
# Extra LightningCLI arguments, e.g. ARGS="--trainer.max_epochs 5"; RESUME=path/to/last.ckpt (or last) resumes.
ARGS ?=
RESUME ?=
RESUME_ARG := $(if $(RESUME),--ckpt_path $(RESUME),)

SEG ?= deeplabv3
MODEL ?= resnet50
FUSION ?= xattn
MASK ?= soft
MASK_SOURCE ?= predicted

.PHONY: install test test-fast demo paper report eval-ood mlflow-ui clean bench hq-masks train-seg predict-masks train-baseline train-mgc

install: $(VENV)/.installed

# The stamp makes a re-run instant; editing pyproject.toml triggers a reinstall.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

# The main job: the whole protocol on the demo benchmark (about 15 min on 2 CPU cores); reruns skip finished stages.
demo: install
	$(MGC) pipeline experiments/pipeline_demo.yaml

# The same stages at the paper's scale (10,000 windows, 3 seeds): meant for a GPU machine.
paper: install
	$(MGC) pipeline experiments/pipeline_paper.yaml

report: install
	$(MGC) report --experiment $(or $(EXPERIMENT),demo)

# Test a trained classifier on another preset: make eval-ood CKPT=... PRESET=mel [SEGMENTER=...]
eval-ood: install
	$(MGC) evaluate --checkpoint $(CKPT) --preset $(PRESET) $(if $(SEGMENTER),--segmenter $(SEGMENTER),)

bench: $(BENCH)/manifest.csv

$(BENCH)/manifest.csv: | install
	$(MGC) synth $(BENCH) --preset demo --workers 2

hq-masks: $(BENCH)/hq.csv

$(BENCH)/hq.csv: $(BENCH)/manifest.csv
	$(MGC) masks select $(BENCH)/manifest.csv --count $(HQ_COUNT) --source ideal --out $@

# Segmenter: make train-seg [SEG=deeplabv3|unet] (unet keeps thin clicks; see BENCHMARKS.md)
train-seg: $(BENCH)/hq.csv
	$(MGC) fit --config experiments/seg_$(SEG).yaml --data.init_args.manifest $(BENCH)/hq.csv $(RESUME_ARG) $(ARGS)

# Predict masks for every window of every preset with a trained segmenter: make predict-masks CKPT=path.ckpt
predict-masks: $(BENCH)/manifest.csv
	@test -n "$(CKPT)" || (echo "usage: make predict-masks CKPT=checkpoints/<exp>/<run>/checkpoints/best-....ckpt"; exit 2)
	for preset in origin mel pcen; do $(MGC) masks predict $(BENCH)/manifest.csv --checkpoint $(CKPT) --preset $$preset; done

# Image-only baseline: make train-baseline MODEL=resnet50|convnext_tiny|vit_b16|deit
train-baseline: $(BENCH)/manifest.csv
	$(MGC) fit --config experiments/classifier_base.yaml --config experiments/baseline_$(MODEL).yaml \
		--data.init_args.manifest $(BENCH)/manifest.csv $(RESUME_ARG) $(ARGS)

# Mask-guided: make train-mgc FUSION=concat|gated|xattn MASK=binary|soft [MASK_SOURCE=ideal|candidate|predicted]
train-mgc: $(BENCH)/manifest.csv
	$(MGC) fit --config experiments/classifier_base.yaml --config experiments/mgc_$(FUSION)_$(MASK).yaml \
		--data.init_args.manifest $(BENCH)/manifest.csv --data.init_args.mask_source $(MASK_SOURCE) \
		$(RESUME_ARG) $(ARGS)

mlflow-ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server \
		--backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts \
		--host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf data/cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
