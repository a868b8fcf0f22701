#!/usr/bin/env bash
# Runs a command with LIBTORCH pointing at the bootstrapped libtorch 2.11.0 (installed on first use).
#   scripts/with-libtorch.sh cargo build --release
# ADVDET_CUDA=1 selects cuda mode (see scripts/bootstrap-libtorch.sh and build.rs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${ADVDET_CUDA:-0}" = 1 ]; then
  LIBTORCH=$("$here/bootstrap-libtorch.sh" --cuda)
else
  LIBTORCH=$("$here/bootstrap-libtorch.sh")
fi
export LIBTORCH
exec "$@"
