"""One epoch of LeNet on full MNIST: advdet vs a plain PyTorch loop, same architecture (scripts/reference/models.py),
batch size, optimiser (Adam, lr 1e-3), data order source and thread count, on the same machine in the same run.

    ADVDET_REF_PYTHON=/path/to/python-with-torch python3 scripts/compare/train_lenet.py [--threads 2] [--batch-size 64]
Without ADVDET_REF_PYTHON it creates a throwaway venv with torch==2.11.0. Needs target/release/advdet (make build) and
MNIST in the data cache (make data).
"""
import argparse, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import peer  # noqa: E402





def main(args):
    import torch
    from models import LeNet
    torch.set_num_threads(args.threads)
    x, y = peer.mnist("train")
    torch.manual_seed(0)
    model = LeNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    perm = torch.randperm(len(y))
    t0 = time.perf_counter()
    for s in range(0, len(y), args.batch_size):
        idx = perm[s:s + args.batch_size]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch_s = time.perf_counter() - t0

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([os.path.join(ROOT, "target", "release", "advdet"), "--cpu-mode", "native", "train", "--dataset", "mnist", "--epochs", "1",
                              "--batch-size", str(args.batch_size), "--device", "cpu", "--out", os.path.join(tmp, "m.safetensors")],
                             env=env, check=True, capture_output=True, text=True).stdout
    # "trained in 9.6 s (6279 images/s); ..."
    advdet_s = float(out.split("trained in ")[1].split(" s")[0])
    n = len(y)
    print(f"threads {args.threads}, batch {args.batch_size}, {n} images")
    print(f"pytorch: {torch_s:7.2f} s  {n / torch_s:8.0f} images/s")
    print(f"advdet : {advdet_s:7.2f} s  {n / advdet_s:8.0f} images/s")
    print(f"ratio (advdet images/s / pytorch images/s): {torch_s / advdet_s:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    if "--inside" in sys.argv:
        sys.argv.remove("--inside")
        main(p.parse_args())
    else:
        p.parse_args()
        peer.reexec(__file__, ["torch==2.11.0", "numpy"])
