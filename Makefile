# Two commands set everything up: `make install`, then `make test`.
VENV ?= .venv
# the MLflow SQLite store `make mlflow-ui` serves, and its port on 127.0.0.1
STORE ?= mlflow.db
PORT ?= 5000
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

# The defaults train the models `make demo` trains, with the YAMLs' own epochs (40 for the segmenter, 30 for the
# classifiers; the demo's pipeline sets 18 and 15): the U-Net segmenter (seg_unet.yaml; SEG=deeplabv3 is the paper's,
# IoU 0.10 at 128 px), the narrow ResNet-18 recipe (RECIPE; empty for another backbone: MODEL=resnet50 RECIPE=) and
# MGC with its image head.
SEG ?= unet
MODEL ?= resnet18
RECIPE ?= experiments/narrow_resnet18.yaml
RECIPE_ARG := $(if $(RECIPE),--config $(RECIPE),)
FUSION ?= xattn
MASK ?= soft
MASK_SOURCE ?= predicted
PRESETS ?= origin mel pcen

# File targets chain the stages, so a target builds what it needs (`make -n train-mgc` shows the chain):
# manifest -> hq.csv -> segmenter checkpoint (a link to the best one) -> predicted masks of every preset.
SEG_CKPT := $(BENCH)/segmenter-$(SEG).ckpt
PREDICTED := $(BENCH)/predicted-masks-$(SEG).done

.PHONY: install test test-fast demo demo-seeds mask-curve learning-curve few-shot-curve paper report eval-ood mlflow-ui clean bench hq-masks train-seg predict-masks train-baseline train-mgc

install: $(VENV)/.installed

# The stamp makes a re-run instant; editing pyproject.toml triggers a reinstall.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# lint-imports first: the import contracts of pyproject.toml (stages import only the stages below them). The tests run
# in TEST_WORKERS processes (pytest-xdist; one per core, at most 4), each taking whole modules, longest first
# (tests/conftest.py); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder
test: install
	$(VENV)/bin/lint-imports --no-logo
	$(PYTEST)

test-fast: install
	$(VENV)/bin/lint-imports --no-logo
	$(PYTEST) -m "not slow"

# The main job: the whole protocol on the demo benchmark (12-21 min on 2 CPU cores, by CPU); reruns skip finished stages.
demo: install
	$(MGC) pipeline experiments/pipeline_demo.yaml

# The few-shot curve: the segmenter's IoU on 25 to 400 high-quality masks, chosen at random or by its uncertainty
# (8 more segmenters: 54 minutes on 2 AMD EPYC cores beside other jobs).
few-shot-curve: install
	$(MGC) pipeline experiments/pipeline_demo.yaml --few-shot-curve

# Seeds 1 and 2 beside a finished demo's seed 0 (about 30 more minutes on 2 cores): the report then gives each
# model's spread.
demo-seeds: install
	$(MGC) pipeline experiments/pipeline_demo.yaml --seeds 0 1 2

# The mask-quality curve: MGC on exact masks degraded to IoU 0.5-0.9 and on the exact masks (a perfect segmenter)
# beside the baseline (about 32 more minutes).
mask-curve: install
	$(MGC) pipeline experiments/pipeline_demo.yaml --mask-curve

# The learning curve: baseline and MGC on 100 and 300 labelled windows beside the full-size ones (about 15 more
# minutes per seed; SEEDS="0 1 2" for three).
SEEDS ?= 0
learning-curve: install
	$(MGC) pipeline experiments/pipeline_demo.yaml --learning-curve --seeds $(SEEDS)

# The same stages at the paper's scale (10,000 windows, one seed), sized for one GPU with 16 cores; everything but the
# data lands in runs/paper/. Without a registry there: scripts/fetch_gpu_wheels.sh here, scripts/gpu_paper.sh there.
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

# Segmenter: make train-seg [SEG=unet|deeplabv3] (unet keeps thin clicks; see BENCHMARKS.md); it always trains,
# while $(SEG_CKPT) is trained only when missing or older than hq.csv.
# SEG_ARGS reach the segmenter only: a classifier target's ARGS and RESUME never leak into its prerequisite.
SEG_ARGS ?=
define fit_segmenter
	$(MGC) fit --config experiments/seg_$(SEG).yaml --data.init_args.manifest $(BENCH)/hq.csv \
		--link-best $(SEG_CKPT) $(SEG_ARGS) $(1)
endef

train-seg: $(BENCH)/hq.csv
	$(call fit_segmenter,$(RESUME_ARG) $(ARGS))

$(SEG_CKPT): $(BENCH)/hq.csv
	$(call fit_segmenter,)

# Masks of every window of every preset from the segmenter: make predict-masks [CKPT=another segmenter checkpoint]
$(PREDICTED): $(SEG_CKPT) $(BENCH)/manifest.csv
	for preset in $(PRESETS); do \
		$(MGC) masks predict $(BENCH)/manifest.csv --checkpoint $(SEG_CKPT) --preset $$preset --replace || exit 1; \
	done
	touch $@

predict-masks: $(if $(CKPT),$(BENCH)/manifest.csv,$(PREDICTED))
	$(if $(CKPT),for preset in $(PRESETS); do \
		$(MGC) masks predict $(BENCH)/manifest.csv --checkpoint $(CKPT) --preset $$preset --replace || exit 1; done)

# Image-only baseline: make train-baseline [MODEL=resnet50|convnext_tiny|vit_b16|deit RECIPE=]
train-baseline: $(BENCH)/manifest.csv
	$(MGC) fit --config experiments/classifier_base.yaml $(RECIPE_ARG) --config experiments/baseline_$(MODEL).yaml \
		--data.init_args.manifest $(BENCH)/manifest.csv $(RESUME_ARG) $(ARGS)

# Mask-guided: make train-mgc FUSION=concat|gated|xattn MASK=binary|soft|probability [MASK_SOURCE=ideal|candidate|predicted]
train-mgc: $(BENCH)/manifest.csv $(if $(filter predicted,$(MASK_SOURCE)),$(PREDICTED))
	$(MGC) fit --config experiments/classifier_base.yaml $(RECIPE_ARG) --config experiments/mgc_$(FUSION)_$(MASK).yaml \
		--data.init_args.manifest $(BENCH)/manifest.csv --data.init_args.mask_source $(MASK_SOURCE) \
		$(RESUME_ARG) $(ARGS)

# Prints the address of the runs of EXPERIMENT (default demo), then serves the UI until Ctrl-C.
mlflow-ui: install
	@$(PY) scripts/mlflow_runs_url.py $(STORE) $(or $(EXPERIMENT),demo) $(PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server \
		--backend-store-uri sqlite:///$(STORE) --default-artifact-root ./mlartifacts \
		--host 127.0.0.1 --port $(PORT) --workers 1

clean:
	rm -rf data/cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
