"""AUROC on 1e6 scores: `advdet roc` vs scikit-learn's roc_auc_score on the same CSV file, on the same machine in the same
run, with the same thread count (scikit-learn's roc_auc_score is single-threaded; advdet gets RAYON_NUM_THREADS).

    python3 scripts/compare/auroc.py [--n 1000000] [--repeats 5] [--threads 1]
Without ADVDET_REF_PYTHON (a python with scikit-learn and numpy) it creates a throwaway venv and installs them there.
Needs target/release/advdet (make build). Prints a markdown table of best-of-N wall times and the ratios:
  - end to end, file in, AUROC out: `advdet roc --json` (process start included) vs a python process that loads the file
    with numpy and calls roc_auc_score;
  - the metric alone, data in memory: advdet's own timing of the AUROC (and of all six metrics) vs the roc_auc_score
    call.
"""
import argparse, json, os, re, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ADVDET = os.path.join(HERE, "..", "..", "target", "release", "advdet")
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import peer  # noqa: E402
SKLEARN_FILE = """
import sys, time, numpy as np
from sklearn.metrics import roc_auc_score
d = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
print(roc_auc_score(d[:, 0] > 0.5, d[:, 1]))
"""




def best_of(repeats, fn):
    """(best wall seconds, result of the last call)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(args):
    import numpy as np, sklearn
    from sklearn.metrics import roc_auc_score
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    rng = np.random.default_rng(0)
    y = rng.random(args.n) < 0.5
    s = rng.normal(0.0, 1.0, args.n) + 1.0 * y
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scores.csv")
        np.savetxt(path, np.column_stack([y.astype(int), s]), fmt=["%d", "%.17g"], delimiter=",", header="label,score",
                   comments="")
        run = lambda cmd: subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        sk_mem, sk_auc = best_of(args.repeats, lambda: roc_auc_score(y, s))
        sk_file, sk_out = best_of(args.repeats, lambda: run([sys.executable, "-c", SKLEARN_FILE, path]))
        startup, _ = best_of(args.repeats, lambda: run([ADVDET, "--help"]))
        timings = []
        def advdet_roc():
            out = run([ADVDET, "roc", "--scores", path, "--json", "--timing"])
            timings.append([float(v) / 1e3 for v in re.findall(r"([\d.]+) ms", out.stderr)])
            return out
        ad_file, ad_out = best_of(args.repeats, advdet_roc)
    read_s, metrics_s, total_s, auroc_s = (min(t[k] for t in timings) for k in range(4))
    ad_auc = json.loads(ad_out.stdout)["auroc"]
    assert abs(ad_auc - sk_auc) < 1e-9 and abs(float(sk_out.stdout) - sk_auc) < 1e-9, (ad_auc, sk_auc, sk_out.stdout)
    print(f"AUROC on {args.n:,} scores ({os.cpu_count()} cores, {args.threads} thread(s), best of {args.repeats}; "
          f"scikit-learn {sklearn.__version__}, numpy {np.__version__}); both give auroc {sk_auc:.12f}\n")
    print("| what | advdet | scikit-learn | ratio |\n|---|---|---|---|")
    print(f"| file in, AUROC out (process) | {ad_file * 1e3:.0f} ms | {sk_file * 1e3:.0f} ms | {sk_file / ad_file:.2f}x |")
    print(f"| AUROC on data in memory | {auroc_s * 1e3:.1f} ms | {sk_mem * 1e3:.1f} ms (roc_auc_score) "
          f"| {sk_mem / auroc_s:.1f}x |")
    print(f"| all six metrics on data in memory | {metrics_s * 1e3:.1f} ms | {sk_mem * 1e3:.1f} ms (roc_auc_score alone) "
          f"| {sk_mem / metrics_s:.1f}x |")
    print(f"| `advdet roc` process vs the roc_auc_score call | {ad_file * 1e3:.0f} ms | {sk_mem * 1e3:.1f} ms "
          f"| {sk_mem / ad_file:.2f}x |")
    print(f"\nadvdet roc: process start (libtorch load, `advdet --help`) {startup * 1e3:.0f} ms, reading the CSV "
          f"{read_s * 1e3:.1f} ms, six metrics {metrics_s * 1e3:.1f} ms, in-process total {total_s * 1e3:.1f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if not a.inside:
        peer.reexec(__file__, ["scikit-learn", "numpy"])
    main(a)
