"""FGSM and PGD-Linf (10 and 40 steps): advdet vs torchattacks 3.5.1 on the same LeNet weights, the same MNIST test
images, the same batch size, device (CPU) and thread count, on the same machine in the same run.

    python3 scripts/compare/attacks.py [--n 2000] [--batch-size 256] [--threads 2] [--repeats 3] [--model M.safetensors]

Without ADVDET_REF_PYTHON (a python with torch==2.11.0, safetensors, numpy and torchattacks) it creates a throwaway venv
and installs them there (torch pulls about 2.7 GB). Needs target/release/advdet (make build) and MNIST in the data
cache (make data). The model defaults to the default LeNet in the model cache (the one `make run` trains).

Each measurement is a fresh process on both sides (advdet: `advdet attack`; PyTorch: this script in worker mode), so
both pay their first-call set-up; both models are frozen (gradients with respect to the input only); the table gives
the best of --repeats. Also printed:
  - each side's attack time as a ratio to its lower bound, the model's own forward+backward passes over the same
    batches, measured warm after the attack in the same process (`advdet attack --bound`; here, a plain PyTorch loop);
  - how far advdet's FGSM images are from torchattacks' (the same arithmetic: they should agree to float rounding).
"""
import argparse, glob, json, os, re, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import peer  # noqa: E402
ADVDET = os.path.join(ROOT, "target", "release", "advdet")
ATTACKS = {  # name: (advdet arguments, torchattacks constructor arguments, forward+backward passes per batch)
    "fgsm": (["--attack", "fgsm", "--eps", "0.3"], ("FGSM", dict(eps=0.3)), 1),
    "pgd-linf-10": (["--attack", "pgd-linf", "--eps", "0.3", "--alpha", "0.01", "--steps", "10"],
                    ("PGD", dict(eps=0.3, alpha=0.01, steps=10, random_start=True)), 10),
    "pgd-linf-40": (["--attack", "pgd-linf", "--eps", "0.3", "--alpha", "0.01", "--steps", "40"],
                    ("PGD", dict(eps=0.3, alpha=0.01, steps=40, random_start=True)), 40),
}






def worker(args):
    """One torchattacks run in this fresh process: prints as JSON the attack's wall seconds and PyTorch's own
    forward+backward bound for the same batches (measured after the attack, warm), and saves the images if asked."""
    import torch, torchattacks
    from safetensors.torch import load_file, save_file
    from models import LeNet
    torch.set_num_threads(args.threads)
    model = LeNet()
    model.load_state_dict(load_file(args.model))
    model.eval()
    model.requires_grad_(False)  # as advdet freezes its model: both take gradients with respect to the input only
    x, y = peer.mnist("test", args.n)
    _, (cls, kwargs), passes = ATTACKS[args.worker]
    atk = getattr(torchattacks, cls)(model, **kwargs)
    t0 = time.perf_counter()
    parts = [atk(x[s:s + args.batch_size], y[s:s + args.batch_size]) for s in range(0, args.n, args.batch_size)]
    seconds = time.perf_counter() - t0

    def forward_backward(xb, yb):
        xb = xb.clone().requires_grad_(True)
        torch.autograd.grad(torch.nn.functional.cross_entropy(model(xb), yb), xb)

    forward_backward(x[:args.batch_size], y[:args.batch_size])
    t0 = time.perf_counter()
    for s in range(0, args.n, args.batch_size):
        for _ in range(passes):
            forward_backward(x[s:s + args.batch_size], y[s:s + args.batch_size])
    bound = time.perf_counter() - t0
    if args.save:
        save_file({"adversarial": torch.cat(parts).contiguous()}, args.save)
    print(json.dumps({"seconds": seconds, "bound": bound}))


def default_model(tmp, env):
    found = sorted(glob.glob(os.path.join(peer.cache_dir(), "models", "lenet-mnist-s0-e6-*.safetensors")), key=os.path.getmtime)
    if found:
        return found[-1]
    path = os.path.join(tmp, "lenet.safetensors")
    print("no default LeNet in the model cache: training one epoch for the comparison", file=sys.stderr)
    subprocess.run([ADVDET, "--cpu-mode", "native", "train", "--dataset", "mnist", "--epochs", "1", "--device", "cpu", "--out", path], env=env,
                   check=True, capture_output=True)
    return path


def main(args):
    import torch, torchattacks
    from safetensors.torch import load_file
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    run = lambda cmd: subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    peer_env = dict(env, MALLOC_MMAP_THRESHOLD_=str(1 << 30), MALLOC_TRIM_THRESHOLD_=str(1 << 30)) \
        if args.peer_malloc_tuned else env
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(tmp, env)
        rows, fgsm_diff = [], None
        for name, (adv_args, _, _) in ATTACKS.items():
            ours, theirs, ratio, their_ratio = [], [], [], []
            for r in range(args.repeats):
                out = run([ADVDET, "--cpu-mode", "native", "attack", "--model", model, "--limit", str(args.n), "--batch-size", str(args.batch_size),
                           "--device", "cpu", "--bound", "--out", os.path.join(tmp, "advdet.safetensors")] + adv_args).stdout
                ours.append(args.n / float(re.search(r"([\d.]+) images/s", out).group(1)))
                ratio.append(float(re.search(r"attack time / bound ([\d.]+)", out).group(1)))
                save = ["--save", os.path.join(tmp, "torchattacks.safetensors")] if name == "fgsm" and r == 0 else []
                w = subprocess.run([sys.executable, __file__, "--inside", "--worker", name, "--model", model, "--n", str(args.n),
                                    "--batch-size", str(args.batch_size), "--threads", str(args.threads)] + save,
                                   env=peer_env, check=True, capture_output=True, text=True).stdout
                t = json.loads(w.strip().splitlines()[-1])
                theirs.append(t["seconds"])
                their_ratio.append(t["seconds"] / t["bound"])
                if save:
                    a = load_file(os.path.join(tmp, "advdet.safetensors"))["adversarial"]
                    b = load_file(os.path.join(tmp, "torchattacks.safetensors"))["adversarial"]
                    fgsm_diff = ((a - b).abs().max().item(), (a != b).any(dim=(1, 2, 3)).sum().item())
            best = min(range(args.repeats), key=lambda i: ours[i])
            their_best = min(range(args.repeats), key=lambda i: theirs[i])
            rows.append((name, args.n / ours[best], args.n / theirs[their_best], ratio[best], their_ratio[their_best]))
    print(f"{args.n} MNIST test images, LeNet, batch {args.batch_size}, CPU, {args.threads} thread(s) "
          f"({os.cpu_count()} cores); torch {torch.__version__}, torchattacks {torchattacks.__version__}; "
          f"best of {args.repeats} fresh processes"
          + ("; torchattacks with glibc's malloc thresholds at 1 GiB" if args.peer_malloc_tuned else "") + "\n")
    print("| attack | advdet images/s | torchattacks images/s | advdet / torchattacks | advdet time / its forward+backward "
          "bound | torchattacks time / PyTorch forward+backward bound |")
    print("|---|---|---|---|---|---|")
    for name, a, t, r, tr in rows:
        print(f"| {name} | {a:.0f} | {t:.0f} | {a / t:.2f}x | {r:.2f} | {tr:.2f} |")
    if fgsm_diff:
        print(f"\nFGSM images, advdet vs torchattacks: max |difference| {fgsm_diff[0]:.3g}; {fgsm_diff[1]} of {args.n} "
              "images differ at all")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model")
    p.add_argument("--peer-malloc-tuned", action="store_true",
                   help="run the torchattacks side with glibc's mmap and trim thresholds at 1 GiB (MALLOC_MMAP_THRESHOLD_, "
                        "MALLOC_TRIM_THRESHOLD_), so it keeps its freed memory instead of faulting it back in every step")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=list(ATTACKS), help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    a = p.parse_args()
    if not a.inside:
        peer.reexec(__file__, peer.TORCH + peer.TORCHATTACKS, peer.TORCHATTACKS_NO_DEPS)
    if a.worker:
        worker(a)
    else:
        main(a)
