"""How advdet's cost grows: the job of scripts/compare/job.py (seven attacks, four detectors on two routes, both protocols)
at several numbers of test images and of bootstrap resamples, each a fresh `advdet run` process, with its stage seconds
(from manifest.json) and its peak memory (max RSS of the process).

    python3 scripts/compare/scaling.py [--limits 1000,2000,5000,10000] [--bootstraps 200,1000,10000] [--cpu-mode native]

The image runs use 1000 bootstrap resamples; the bootstrap runs use the first of --limits images and reuse that run's
cached attacks and scores (only the metrics stage is computed again). The class subnetworks use a short extraction
(150 steps over 200 images per class) since they are not what is measured. Standard library only; needs
target/release/advdet (make build) and MNIST (make data).
"""
import argparse, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import job  # noqa: E402


def run(suite_text, out, cpu_mode, fresh, env):
    """One `advdet run` in a fresh process: (manifest, wall seconds, its max RSS in MiB, from wait4)."""
    path = os.path.join(out, "suite.toml")
    with open(path, "w") as f:
        f.write(suite_text)
    cmd = [job.ADVDET, "--cpu-mode", cpu_mode, "run", path, "--out", out] + (["--fresh"] if fresh else [])
    with open(os.path.join(out, "stderr.log"), "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{open(os.path.join(out, 'stderr.log')).read()}")
    m = json.load(open(os.path.join(out, job.SUITE, "manifest.json")))
    return m, wall, usage.ru_maxrss / 1024


def row(label, m, wall, rss):
    st = {s["stage"]: s["seconds"] for s in m["stages"]}
    scores = st.get("scores", 0.0) + st.get("fit", 0.0)
    return (f"| {label} | {st.get('attacks', 0.0):.1f} | {scores:.1f} | {st.get('metrics', 0.0):.2f} | "
            f"{st.get('report', 0.0):.1f} | {m['wall_seconds']:.1f} | {rss:.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limits", default="1000,2000,5000,10000")
    p.add_argument("--bootstraps", default="200,1000,10000")
    p.add_argument("--cpu-mode", default="native", choices=["native", "reproducible"])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    # the environment of job.py's runs: the native mode's cache keys include the thread variables, so the model is shared
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    limits = [int(x) for x in a.limits.split(",")]
    boots = [int(x) for x in a.bootstraps.split(",")]
    short = "steps = 150\nimages_per_class = 200\nbatch_per_class = 16\ncross_images_per_class = 50"
    text = lambda n, b: job.suite_text(n, b).replace("steps = 300\nimages_per_class = 500", short)
    print("| run | attacks s | scores s | metrics s | report s | in-run wall s | max RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        first = os.path.join(tmp, f"n{limits[0]}")
        for b in sorted(boots):
            os.makedirs(first, exist_ok=True)
            m, wall, rss = run(text(limits[0], b), first, a.cpu_mode, False, env)
            print(row(f"{limits[0]} images, {b} resamples", m, wall, rss), flush=True)
        for n in limits[1:]:
            out = os.path.join(tmp, f"n{n}")
            os.makedirs(out)
            m, wall, rss = run(text(n, 1000), out, a.cpu_mode, True, env)
            print(row(f"{n} images, 1000 resamples", m, wall, rss), flush=True)
    print(f"\n{os.cpu_count()} cores, advdet in {a.cpu_mode} mode; the first row computes the attacks and scores, the "
          "other bootstrap rows take them from its cache (their attacks and scores columns are cache reads)")


if __name__ == "__main__":
    main()
