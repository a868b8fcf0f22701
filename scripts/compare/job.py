"""The main job's shape end to end: `advdet run` against the same job written the way a Python user would write it, on the
same LeNet weights, subnetwork masks, MNIST test images, parameters, batch size and thread count, on the same machine.

    python3 scripts/compare/job.py [--n 1000] [--bootstrap 1000] [--threads 2] [--cpu-mode native] [--before BIN]

The job: FGSM at eps 0.1/0.2/0.3, BIM (eps 0.3), PGD-Linf (eps 0.3, 40 steps), PGD-L2 (eps 2), MI-FGSM (eps 0.3) on
the first N test images; MSP, entropy, margin and ODIN on the full model and on the predicted class's subnetwork; every
metric with a percentile bootstrap, both protocols. The Python side: torchattacks 3.5.1 for the attacks, a short PyTorch
loop for the four detectors (one plain forward per route and batch, ODIN's forward+backward+forward per route), and
scikit-learn's roc_auc_score, average_precision_score and roc_curve with a NumPy bootstrap for the metrics.

advdet runs first with --fresh and --bound (its stage seconds from manifest.json; its subnetworks are extracted in that
run, outside the compared stages), then the Python job runs in a fresh process on advdet's weights and masks. Printed:
per-stage seconds and ratios (Python / advdet: above 1 means advdet is faster), the scoring stage's ratio to its bound
(the same model passes alone, timed warm by `advdet run --bound`), the model calls per image set, and how far the two
sides' AUROCs are apart on the deterministic attacks (FGSM, BIM, MI-FGSM: the same images up to float rounding).
Without ADVDET_REF_PYTHON it installs torch, torchattacks and scikit-learn into a throwaway venv (`make compare` keeps
one under target/).
"""
import argparse, csv, glob, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import peer  # noqa: E402
ADVDET = os.path.join(ROOT, "target", "release", "advdet")
SUITE = "compare-job"
BATCH = 256
ODIN_T, ODIN_EPS = 1000.0, 0.0014  # advdet's ODIN defaults (src/detectors/odin.rs)
# (advdet name, params column, torchattacks class, its arguments): advdet's defaults for each attack (src/attacks)
JOBS = [
    ("fgsm", "eps=0.1", "FGSM", dict(eps=0.1)),
    ("fgsm", "eps=0.2", "FGSM", dict(eps=0.2)),
    ("fgsm", "eps=0.3", "FGSM", dict(eps=0.3)),
    ("bim", "eps=0.3", "BIM", dict(eps=0.3, alpha=1 / 255, steps=80)),
    ("pgd-linf", "eps=0.3 steps=40", "PGD", dict(eps=0.3, alpha=0.01, steps=40, random_start=True)),
    ("pgd-l2", "eps=2.0", "PGDL2", dict(eps=2.0, alpha=2.5 * 2.0 / 40, steps=40, random_start=True)),
    ("mifgsm", "eps=0.3", "MIFGSM", dict(eps=0.3, alpha=0.03, steps=10, decay=1.0)),
]
DETERMINISTIC = {"fgsm", "bim", "mifgsm"}
DETECTORS = ["msp", "entropy", "margin", "odin"]
ROUTES = ["full", "subnet"]
PROTOCOLS = ["successful", "all"]


def suite_text(n, bootstrap):
    attacks = """
[[attack]]
name = "fgsm"
eps = [0.1, 0.2, 0.3]

[[attack]]
name = "bim"
eps = 0.3

[[attack]]
name = "pgd-linf"
eps = 0.3
steps = 40

[[attack]]
name = "pgd-l2"
eps = 2.0

[[attack]]
name = "mifgsm"
eps = 0.3
"""
    return f"""[suite]
name = "{SUITE}"
seed = 0
device = "cpu"
batch_size = {BATCH}

[data]
dataset = "mnist"
test_limit = {n}
fit_size = 5000

[model]
arch = "lenet"

[subnet]
steps = 300
images_per_class = 500
{attacks}
[detectors]
names = {json.dumps(DETECTORS)}
modes = {json.dumps(ROUTES)}

[metrics]
bootstrap = {bootstrap}
protocol = "both"
"""


# ---------------------------------------------------------------- the Python job (runs in the worker process)

def gated_forward(model, x, gates=None):
    """advdet's gated LeNet (src/models/lenet.rs): each unit of conv1, conv2 (after the ReLU, before pooling) and fc1
    scaled by its gate column."""
    import torch.nn.functional as F

    def gate(h, lo, width):
        if gates is None:
            return h
        return h * gates[:, lo:lo + width].reshape(-1, width, *([1] * (h.dim() - 2)))

    h = F.max_pool2d(gate(F.relu(model.conv1(x)), 0, 20), 2)
    h = F.max_pool2d(gate(F.relu(model.conv2(h)), 20, 50), 2)
    h = gate(F.relu(model.fc1(h.flatten(1))), 70, 500)
    return model.fc2(h)


def confidence_scores(logits):
    """MSP (1 - max softmax), entropy and margin (second minus first logit), in float64 as advdet computes them."""
    import torch
    l = logits.double()
    p = l.softmax(-1)
    logp = l.log_softmax(-1)
    top = l.topk(2, -1).values
    return {"msp": 1 - p.max(-1).values, "entropy": -(p * logp).sum(-1), "margin": top[:, 1] - top[:, 0]}


def odin_scores(model, xb, gates):
    import torch
    x = xb.clone().requires_grad_(True)
    logits = gated_forward(model, x, gates) / ODIN_T
    loss = logits.log_softmax(-1).gather(1, logits.argmax(-1, keepdim=True)).sum()
    (g,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
        l2 = gated_forward(model, xb + ODIN_EPS * g.sign(), gates).double() / ODIN_T
    return 1 - l2.softmax(-1).max(-1).values


def score_set(model, masks, xs):
    """Every detector on both routes over one image set: {(detector, route): scores}, and the full model's predictions."""
    import torch
    out = {(d, r): [] for d in DETECTORS for r in ROUTES}
    pred = []
    for s in range(0, len(xs), BATCH):
        xb = xs[s:s + BATCH]
        with torch.no_grad():
            full = gated_forward(model, xb)
            p = full.argmax(-1)
            gates = masks[p]
            sub = gated_forward(model, xb, gates)
        pred.append(p)
        for route, logits, g in (("full", full, None), ("subnet", sub, gates)):
            for d, v in confidence_scores(logits).items():
                out[(d, route)].append(v)
            out[("odin", route)].append(odin_scores(model, xb, g))
    return {k: torch.cat(v).numpy() for k, v in out.items()}, torch.cat(pred).numpy()


def metrics(labels, scores):
    """AUROC, AP with adversarial positive, AP with clean positive, TPR at 5% FPR, FPR at 95% TPR, detection accuracy."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    fpr, tpr, _ = roc_curve(labels, scores)
    return [
        roc_auc_score(labels, scores),
        average_precision_score(labels, scores),
        average_precision_score(1 - labels, -scores),
        float(tpr[np.searchsorted(fpr, 0.05, side="right") - 1]),
        float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        float(np.max(0.5 * (tpr + 1 - fpr))),
    ]


def with_ci(neg, pos, n_resamples, rng):
    """The metrics and their 95% percentile bootstrap intervals, clean and adversarial scores resampled separately."""
    import numpy as np
    labels = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    point = metrics(labels, np.r_[neg, pos])
    samples = [metrics(labels, np.r_[rng.choice(neg, len(neg)), rng.choice(pos, len(pos))]) for _ in range(n_resamples)]
    lo, hi = np.percentile(np.array(samples), [2.5, 97.5], axis=0) if samples else (point, point)
    return point, lo, hi


def worker(args):
    import numpy as np, torch, torchattacks
    from safetensors.torch import load_file
    from models import LeNet
    torch.set_num_threads(args.threads)
    model = LeNet()
    model.load_state_dict(load_file(args.model))
    model.eval()
    model.requires_grad_(False)
    masks = load_file(args.subnets)["masks"].float()
    x, y = peer.mnist("test", args.n)
    seconds = {}

    t0 = time.perf_counter()
    advs, preds = [], []
    for _, _, cls, kw in JOBS:
        atk = getattr(torchattacks, cls)(model, **kw)
        adv = torch.cat([atk(x[s:s + BATCH], y[s:s + BATCH]) for s in range(0, args.n, BATCH)])
        with torch.no_grad():
            preds.append(torch.cat([model(adv[s:s + BATCH]).argmax(-1) for s in range(0, args.n, BATCH)]).numpy())
        advs.append(adv)
    seconds["attacks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clean, pred_clean = score_set(model, masks, x)
    scored = [score_set(model, masks, adv)[0] for adv in advs]
    seconds["scores"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = y.numpy()
    auroc = {}
    for (name, params, _, _), adv_scores, pred_adv in zip(JOBS, scored, preds):
        correct = pred_clean == labels
        for protocol in PROTOCOLS:
            pos_idx = correct & (pred_adv != labels) if protocol == "successful" else correct
            for (d, r), s in adv_scores.items():
                rng = np.random.default_rng(0)
                point, _, _ = with_ci(clean[(d, r)][correct], s[pos_idx], args.bootstrap, rng)
                auroc[f"{name} {params}|{d}|{r}|{protocol}"] = point[0]
    seconds["metrics"] = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "auroc": auroc}))


# ---------------------------------------------------------------- the driver

def main(args):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        suite = os.path.join(tmp, "compare-job.toml")
        with open(suite, "w") as f:
            f.write(suite_text(args.n, args.bootstrap))
        before = None
        if args.before:
            print(f"advdet run with {args.before} ({args.cpu_mode} CPU mode) ...", file=sys.stderr)
            _, mb, _ = run_advdet(args.before, suite, os.path.join(tmp, "before"), args.cpu_mode, env, bound=False)
            before = stage_seconds(mb)
        print(f"advdet run ({args.cpu_mode} CPU mode) ...", file=sys.stderr)
        out = os.path.join(tmp, "out")
        report, m, advdet_wall = run_advdet(ADVDET, suite, out, args.cpu_mode, env, bound=True)
        stages = {s["stage"]: s["seconds"] for s in m["stages"]}
        ours = stage_seconds(m)
        weights = model_file(m["inputs"]["model_weights"])
        subnets = os.path.join(report, "subnets", "subnets.safetensors")
        with open(os.path.join(report, "results.csv")) as f:
            ours_auroc = {f"{row['attack']} {row['params']}|{row['detector']}|{row['mode']}|{row['protocol']}":
                          float(row["auroc"]) for row in csv.DictReader(f) if row["auroc"]}
        print("the same job in Python ...", file=sys.stderr)
        w = subprocess.run([sys.executable, __file__, "--inside", "--worker", "--model", weights, "--subnets", subnets,
                            "--n", str(args.n), "--bootstrap", str(args.bootstrap), "--threads", str(args.threads)],
                           env=env, capture_output=True, text=True)
        if w.returncode != 0:
            sys.exit(f"the Python job failed ({w.returncode}):\n{w.stderr}")
        theirs = json.loads(w.stdout.strip().splitlines()[-1])
    import torch, torchattacks, sklearn
    sets = 1 + len(JOBS)
    batches = -(-args.n // BATCH)
    calls = m.get("scoring_calls", {})
    print(f"{args.n} MNIST test images, LeNet, batch {BATCH}, CPU, {args.threads} thread(s) ({os.cpu_count()} cores), "
          f"{args.bootstrap} bootstrap resamples; advdet {m['advdet_version']} in {args.cpu_mode} mode "
          f"({m['device']}); torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"scikit-learn {sklearn.__version__}\n")
    head = "| stage | " + ("advdet before s | Python / before | " if before else "") + \
        "advdet s | Python s | Python / advdet | target |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for stage, target in (("attacks", 1.0), ("scores", 1.3), ("metrics", 50.0)):
        a, t = ours[stage], theirs["seconds"][stage]
        verdict = "met" if t / a >= target else f"missed by {100 * (1 - (t / a) / target):.0f}%"
        old = f"{before[stage]:.2f} | {t / before[stage]:.2f}x | " if before else ""
        print(f"| {stage} | {old}{a:.2f} | {t:.2f} | {t / a:.2f}x | {target}x ({verdict}) |")
    bound = m.get("scores_bound_seconds")
    if bound:
        print(f"\nadvdet's scoring stage {stages.get('scores', 0.0):.2f} s against its bound (the same model passes "
              f"alone, warm) {bound:.2f} s: {stages.get('scores', 0.0) / bound:.2f}x")
    if calls:
        print(f"model calls per image set of {args.n} ({batches} batches): advdet {calls['forwards'] / sets:.0f} forwards "
              f"and {calls['backwards'] / sets:.0f} backwards; the Python loop {6 * batches} and {2 * batches}")
    print(f"advdet process wall {advdet_wall:.1f} s (with the subnetwork extraction), in-run {m['wall_seconds']:.1f} s")
    diffs = [abs(ours_auroc[k] - v) for k, v in theirs["auroc"].items()
             if k.split(" ")[0] in DETERMINISTIC and k in ours_auroc]
    if diffs:
        print(f"AUROC, advdet vs Python, deterministic attacks ({len(diffs)} cells): max |difference| {max(diffs):.2g}")


def run_advdet(binary, suite, out, cpu_mode, env, bound):
    """`binary run suite` fresh into `out`: (report folder, its manifest, process wall seconds)."""
    cmd = [binary, "--cpu-mode", cpu_mode, "run", suite, "--out", out, "--fresh"] + (["--bound"] if bound else [])
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    report = os.path.join(out, SUITE)
    return report, json.load(open(os.path.join(report, "manifest.json"))), wall


def stage_seconds(manifest):
    """The compared stages' seconds from a manifest (fitting counts as scoring)."""
    st = {s["stage"]: s["seconds"] for s in manifest["stages"]}
    return {"attacks": st.get("attacks", 0.0), "scores": st.get("scores", 0.0) + st.get("fit", 0.0),
            "metrics": st.get("metrics", 0.0)}


def model_file(sha256):
    """The weights file in advdet's model cache with this sha256 (the run's `model_weights` input)."""
    import hashlib
    for path in glob.glob(os.path.join(peer.cache_dir(), "models", "*.safetensors")):
        if hashlib.sha256(open(path, "rb").read()).hexdigest() == sha256:
            return path
    sys.exit(f"no weights with sha256 {sha256} in {os.path.join(peer.cache_dir(), 'models')}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cpu-mode", default="native", choices=["native", "reproducible"])
    p.add_argument("--before", help="another advdet binary (an earlier build) to run on the same suite: a before column")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--subnets", help=argparse.SUPPRESS)
    a = p.parse_args()
    if not a.inside:
        peer.reexec(__file__, peer.TORCH + peer.TORCHATTACKS + ["scikit-learn"], peer.TORCHATTACKS_NO_DEPS)
    if a.worker:
        worker(a)
    else:
        main(a)
