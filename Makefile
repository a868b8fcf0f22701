# advdet: every target installs what it needs (libtorch 2.11.0 into the user cache, datasets into the data cache).
SHELL := /bin/bash
CARGO := scripts/with-libtorch.sh cargo
BIN := target/release/advdet
# Where a GPU host's own PyTorch 2.11.0 keeps libtorch (rpath of the portable cuda-mode binary).
GPU_TORCH_LIB ?= /opt/torch/.venv/lib/python3.12/site-packages/torch/lib

.PHONY: build data run paper smoke baseline test bench bench-cuda compare build-cuda build-cuda-portable clean-cache

build:
	$(CARGO) build --release --locked

data: build
	$(BIN) data fetch mnist
	$(BIN) data fetch fashion-mnist

run: data
	$(BIN) run attacks/mnist.toml

# The paper runs: the whole test splits, three seeds, four lambdas, every control (hours on CPU: see the README).
# SHARD=I/N runs one shard of each (then `advdet merge reports/<suite>/shard-*-of-N --out reports`).
paper: data
	$(BIN) run attacks/paper-mnist.toml $(if $(SHARD),--shard $(SHARD))
	$(BIN) run attacks/paper-fashion-mnist.toml $(if $(SHARD),--shard $(SHARD))

# The check fails only on what it flags (beyond the tolerance and the baseline's interval); the cmp line says whether
# this machine reproduced the baseline's bytes, as the reproducible CPU mode promises on any x86-64 with AVX2.
SAME_BYTES := cmp -s reports/smoke/results.csv reports/baselines/smoke.csv \
	&& echo "results.csv is byte-identical to reports/baselines/smoke.csv" \
	|| echo "note: results.csv differs from the bytes of reports/baselines/smoke.csv (another CPU mode or advdet version?)"

smoke: data
	$(BIN) run attacks/smoke.toml
	$(BIN) check reports/smoke/results.csv --baseline reports/baselines/smoke.csv
	@$(SAME_BYTES)

# a new smoke baseline from a fresh reproducible-mode run: results and manifest side by side
baseline: data
	$(BIN) run attacks/smoke.toml --fresh --cpu-mode reproducible
	cp reports/smoke/results.csv reports/baselines/smoke.csv
	cp reports/smoke/manifest.json reports/baselines/smoke.manifest.json

test: data
	$(CARGO) test --release --locked
	$(BIN) run attacks/smoke.toml
	$(BIN) check reports/smoke/results.csv --baseline reports/baselines/smoke.csv
	@$(SAME_BYTES)

# The peers (PyTorch, torchattacks, scikit-learn) go into one throwaway venv under target/ (about 2.7 GB), marked ready
# only once every install finished; set ADVDET_REF_PYTHON to use a python that already has them.
COMPARE_VENV := target/compare-venv
COMPARE_READY := $(COMPARE_VENV)/.ready
REF_PYTHON := $(or $(ADVDET_REF_PYTHON),$(COMPARE_VENV)/bin/python)

$(COMPARE_READY):
	python3 -m venv $(COMPARE_VENV)
	$(COMPARE_VENV)/bin/python -m pip install -q torch==2.11.0 safetensors numpy scipy tqdm requests scikit-learn
	$(COMPARE_VENV)/bin/python -m pip install -q --no-deps torchattacks==3.5.1
	touch $@

compare: data $(if $(ADVDET_REF_PYTHON),,$(COMPARE_READY))
	ADVDET_REF_PYTHON=$(REF_PYTHON) python3 scripts/compare/attacks.py
	ADVDET_REF_PYTHON=$(REF_PYTHON) python3 scripts/compare/train_lenet.py
	ADVDET_REF_PYTHON=$(REF_PYTHON) python3 scripts/compare/auroc.py
	ADVDET_REF_PYTHON=$(REF_PYTHON) python3 scripts/compare/job.py
	bash scripts/compare/runner_overhead.sh

bench: data
	$(CARGO) bench --locked
	python3 scripts/compare/bench_table.py

# the model benches on a GPU host (cuda mode, as build-cuda)
bench-cuda: data
	ADVDET_CUDA=1 ADVDET_BENCH_DEVICE=cuda $(CARGO) bench --locked --target-dir target/cuda --bench attacks --bench subnet
	python3 scripts/compare/bench_table.py target/cuda/criterion

# cuda mode on a GPU host that has Rust: links the host's PyTorch 2.11.0 (or installs the full CUDA wheels).
build-cuda:
	ADVDET_CUDA=1 $(CARGO) build --release --locked --target-dir target/cuda

# cuda mode built on a CPU machine for a GPU host with PyTorch 2.11.0 but no Rust: links against the slim CPU venv
# (its torch wheel carries libtorch_cuda.so) and adds the host's torch/lib as a second rpath.
build-cuda-portable:
	LIBTORCH=$$(scripts/bootstrap-libtorch.sh) ADVDET_CUDA=1 ADVDET_EXTRA_RPATH=$(GPU_TORCH_LIB) \
	  cargo build --release --locked --target-dir target/cuda
