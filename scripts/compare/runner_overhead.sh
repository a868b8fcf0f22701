#!/usr/bin/env bash
# Where a warm smoke suite run spends its time (the default LeNet already in the model cache, every suite stage
# recomputed with --fresh): the manifest's stage times against the process's wall time, and, when `perf` is installed,
# the share of CPU samples per shared object. libtorch_cpu, its JIT kernels ([JIT]), libgomp and the kernel's page
# faults are tensor work; `advdet` itself is the runner, hashing, metrics and plots.
#
#     bash scripts/compare/runner_overhead.sh [suite.toml]   (needs target/release/advdet: make build; make data)
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:-attacks/smoke.toml}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bin=target/release/advdet
# errors go to the terminal; progress bars and tables do not
"$bin" --cpu-mode native run "$suite" --out "$out" > /dev/null 2> "$out/first.err" || { cat "$out/first.err" >&2; exit 2; } # warms the model cache
start=$(date +%s.%N)
"$bin" --cpu-mode native run "$suite" --out "$out" --fresh > /dev/null 2> "$out/run.err" || { cat "$out/run.err" >&2; exit 2; }
end=$(date +%s.%N)
python3 - "$out" "$start" "$end" <<'PY'
import glob, json, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = json.load(open(glob.glob(f"{out}/*/manifest.json")[0]))
wall = end - start
print(f"warm run of suite {m['suite']} ({m['device']}): process wall {wall:.2f} s, in-run wall {m['wall_seconds']:.2f} s, "
      f"outside the run (process start, libtorch load, suite parsing) {wall - m['wall_seconds']:.2f} s "
      f"({100 * (wall - m['wall_seconds']) / wall:.1f}%)")
for s in m["stages"]:
    print(f"  {s['stage']:<9} {s['seconds']:7.2f} s")
PY
if command -v perf > /dev/null && perf record -q -F 499 -o "$out/perf.data" -- "$bin" --cpu-mode native run "$suite" --out "$out" --fresh > /dev/null 2> "$out/perf.err"; then
    echo "CPU samples per shared object (perf, same run again):"
    perf report -i "$out/perf.data" --sort dso --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -10 || true
    echo "top symbols of advdet itself:"
    perf report -i "$out/perf.data" --sort sym --stdio --dsos advdet 2> /dev/null | grep -v '^#' | grep -v '^$' | head -5 || true
else
    echo "(no per-object breakdown: perf is not installed or cannot record here)"
    if [ -s "$out/perf.err" ]; then tail -2 "$out/perf.err"; fi
fi
