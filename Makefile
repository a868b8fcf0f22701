# advdet: every target installs what it needs (libtorch 2.11.0 into the user cache, datasets into the data cache).
SHELL := /bin/bash
CARGO := scripts/with-libtorch.sh cargo
BIN := target/release/advdet
# Where a GPU host's own PyTorch 2.11.0 keeps libtorch (rpath of the portable cuda-mode binary).
GPU_TORCH_LIB ?= /opt/torch/.venv/lib/python3.12/site-packages/torch/lib

.PHONY: build data run smoke test bench compare build-cuda build-cuda-portable clean-cache

build:
	$(CARGO) build --release --locked

data: build
	$(BIN) data fetch mnist
	$(BIN) data fetch fashion-mnist

run: data
	$(BIN) run attacks/mnist.toml

smoke: data
	$(BIN) run attacks/smoke.toml
	$(BIN) check reports/smoke/results.csv --baseline reports/baselines/smoke.csv

test: data
	$(CARGO) test --release --locked
	$(BIN) run attacks/smoke.toml
	$(BIN) check reports/smoke/results.csv --baseline reports/baselines/smoke.csv

compare: data
	python3 scripts/compare/train_lenet.py
	python3 scripts/compare/auroc.py

bench: data
	$(CARGO) bench --locked

# cuda mode on a GPU host that has Rust: links the host's PyTorch 2.11.0 (or installs the full CUDA wheels).
build-cuda:
	ADVDET_CUDA=1 $(CARGO) build --release --locked --target-dir target/cuda

# cuda mode built on a CPU machine for a GPU host with PyTorch 2.11.0 but no Rust: links against the slim CPU venv
# (its torch wheel carries libtorch_cuda.so) and adds the host's torch/lib as a second rpath.
build-cuda-portable:
	LIBTORCH=$$(scripts/bootstrap-libtorch.sh) ADVDET_CUDA=1 ADVDET_EXTRA_RPATH=$(GPU_TORCH_LIB) \
	  cargo build --release --locked --target-dir target/cuda
