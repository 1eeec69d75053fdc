# Two entry points: `make run` (the main job) and `make test` (the suite CI runs).
# Both create .venv on first use; torch is installed pinned before anything else so that
# pip takes the local CPU wheel instead of pulling CUDA packages.
VENV ?= .venv
PY := $(VENV)/bin/python
# The GLUE mirror beside the checkout when there is one, otherwise a download into glue_data/.
DATA_DIR ?= $(if $(wildcard ../shared/glue),../shared/glue,glue_data)
OUTPUT_DIR ?= output/camtl-mini-glue

# The main job: CA-MTL (base layout on the bundled offline encoder) on all nine GLUE tasks at the fastest
# precision the CPU has, temperature sampling with CoLA weighted up, mean pooling and heads at 10x the
# learning rate (what results/diagnosis/ supports); 13 minutes on a 2-core CPU with native bf16
# (results/main-job.txt); then its dev scores against the linear-probe floor (results/probe.md).
RUN_FLAGS ?= --model_name_or_path CA-MTL-mini --data_dir $(DATA_DIR) --output_dir $(OUTPUT_DIR) \
	--overwrite_output_dir --do_train --do_eval --precision auto --task_sampling temperature --sampling_temperature 5 \
	--sampling_weights cola=3 sts-b=1.5 sst-2=0.5 wnli=0.25 \
	--pooling mean --head_lr_multiplier 10 --freeze_encoder_layers 0-2 --max_seq_length 128 \
	--per_device_train_batch_size 32 --learning_rate 1e-4 --max_steps 1700 --logging_steps 250 \
	--save_steps 1700 --max_eval_samples 1000 --seed 12

.PHONY: run test lint check-data docs docker-test

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-docs.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt \
		-r requirements-docs.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

glue_data: | $(VENV)/.installed
	$(PY) download_glue_data.py --data_dir glue_data --tasks all

run: $(VENV)/.installed | $(DATA_DIR)
	$(PY) run.py $(RUN_FLAGS)
	$(PY) -m camtl.bench margins $(OUTPUT_DIR) --max_eval_samples 1000

check-data: $(VENV)/.installed | $(DATA_DIR)
	$(PY) -m camtl.data check --data_dir $(DATA_DIR)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The suite includes the docs build with warnings as errors (tests/test_docs.py).
test: $(VENV)/.installed lint
	$(PY) -m pytest -q

# The docs site (mkdocs.yml) built into site/, then served with live reload on http://127.0.0.1:8000.
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict
	$(VENV)/bin/mkdocs serve

# The Docker image on a local Debian base (no image registry needed), tested with a short CA-MTL-mini
# job run offline in it (scripts/docker_test.sh). Needs root or sudo (apt-get, debootstrap, dockerd);
# not part of `make test`. Measured here: 320 s the first time, 28 s after (docs/scale.md, Docker).
DOCKER_IMAGE ?= camtl:cpu
DOCKER_BASE_IMAGE ?= camtl-base:bookworm-py311
DOCKER_OUTPUT_DIR ?= output/docker-test

docker-test: | $(DATA_DIR)
	DATA_DIR=$(DATA_DIR) OUT_DIR=$(DOCKER_OUTPUT_DIR) IMAGE=$(DOCKER_IMAGE) \
		BASE_IMAGE=$(DOCKER_BASE_IMAGE) scripts/docker_test.sh
