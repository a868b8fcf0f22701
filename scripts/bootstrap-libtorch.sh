#!/usr/bin/env bash
# Installs libtorch 2.11.0 (the version tch 0.24.0 is built for) into a cache outside the clone, idempotently,
# and prints the LIBTORCH directory on stdout. Everything else goes to stderr.
#
#   scripts/bootstrap-libtorch.sh            CPU mode: the torch wheel without its CUDA dependencies, plus the two
#                                            small runtime wheels libtorch_cpu.so needs (libcudart, libcupti).
#   scripts/bootstrap-libtorch.sh --cuda     cuda mode: use the libtorch of an installed PyTorch 2.11.0 when one is
#                                            found (ADVDET_TORCH_PYTHON, then /opt/torch/.venv, then python3), else
#                                            install the full wheels with their CUDA dependencies.
#
# Environment: ADVDET_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/advdet), ADVDET_LIBTORCH_DIR (the venv to
# use or create; default $ADVDET_CACHE_DIR/libtorch-2.11.0-<mode>).
set -euo pipefail

TORCH_VERSION=2.11.0
mode=cpu
[ "${1:-}" = "--cuda" ] && mode=cuda

cache=${ADVDET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/advdet}
venv=${ADVDET_LIBTORCH_DIR:-$cache/libtorch-$TORCH_VERSION-$mode}
log() { echo "bootstrap-libtorch: $*" >&2; }

# Prints the torch package directory of a site-packages tree if it holds torch $TORCH_VERSION, else fails.
check_torch_dir() {
  local torch_dir=$1 version
  [ -f "$torch_dir/version.py" ] || return 1
  version=$(sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$torch_dir/version.py")
  case "$version" in
    "$TORCH_VERSION"|"$TORCH_VERSION"+*) ;;
    *) log "$torch_dir holds torch '$version', need $TORCH_VERSION"; return 1 ;;
  esac
  [ -f "$torch_dir/lib/libtorch_cpu.so" ] || { log "$torch_dir/lib/libtorch_cpu.so is missing"; return 1; }
  if [ "$mode" = cuda ] && [ ! -f "$torch_dir/lib/libtorch_cuda.so" ]; then
    log "$torch_dir/lib/libtorch_cuda.so is missing (a CPU-only torch cannot serve cuda mode)"; return 1
  fi
  echo "$torch_dir"
}

site_torch() { echo "$(ls -d "$1"/lib/python3*/site-packages 2>/dev/null | head -n 1)/torch"; }

if [ "$mode" = cuda ]; then
  for py in "${ADVDET_TORCH_PYTHON:-}" /opt/torch/.venv/bin/python python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    dir=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)/torch || continue
    if found=$(check_torch_dir "$dir" 2>/dev/null); then
      log "using the installed PyTorch at $found"; echo "$found"; exit 0
    fi
  done
fi

if [ -f "$venv/.advdet-ok" ] && found=$(check_torch_dir "$(site_torch "$venv")"); then
  echo "$found"; exit 0
fi

log "installing torch==$TORCH_VERSION ($mode mode) into $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
pip=("$venv/bin/pip" install --disable-pip-version-check --progress-bar off)
if [ "$mode" = cpu ]; then
  "${pip[@]}" --no-deps "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
else
  "${pip[@]}" "torch==$TORCH_VERSION" >&2
fi
found=$(check_torch_dir "$(site_torch "$venv")") || { log "installed torch failed verification"; exit 1; }
touch "$venv/.advdet-ok"
log "libtorch $TORCH_VERSION ready at $found"
echo "$found"
