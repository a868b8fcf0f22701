"""What the reference and comparison scripts share: re-running themselves under a python that has their peers
($ADVDET_REF_PYTHON, else a throwaway venv), and reading the MNIST files from advdet's data cache. Standard library only
at import time, so the scripts can import it before the venv exists."""
import gzip, os, subprocess, sys, tempfile, venv

TORCH = ["torch==2.11.0", "safetensors", "numpy"]
# torchattacks 3.5.1 is installed with --no-deps (its pins would replace torch); these are the modules it imports
TORCHATTACKS = ["scipy", "tqdm", "requests"]
TORCHATTACKS_NO_DEPS = ["torchattacks==3.5.1"]


def reexec(script, packages, no_deps=()):
    """Runs `script --inside` with this process's arguments under $ADVDET_REF_PYTHON, or under a throwaway venv with
    `packages` installed (and `no_deps` without their dependencies); exits with its status."""
    args = [script, "--inside"] + sys.argv[1:]
    py = os.environ.get("ADVDET_REF_PYTHON")
    if py:
        sys.exit(subprocess.call([py] + args))
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        vpy = os.path.join(tmp, "bin", "python")
        pip = [vpy, "-m", "pip", "install", "-q"]
        subprocess.check_call(pip + list(packages))
        if no_deps:
            subprocess.check_call(pip + ["--no-deps"] + list(no_deps))
        sys.exit(subprocess.call([vpy] + args))


def cache_dir():
    """advdet's cache root: $ADVDET_CACHE_DIR, else $XDG_CACHE_HOME/advdet, else ~/.cache/advdet (src/data/mod.rs)."""
    return os.environ.get("ADVDET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "advdet")


def data_dir(name):
    """Where advdet keeps dataset `name`: $ADVDET_DATA_DIR/name, else <cache>/data/name."""
    return os.path.join(os.environ.get("ADVDET_DATA_DIR") or os.path.join(cache_dir(), "data"), name)


def mnist(split, n=None):
    """The first `n` (default: all) images and labels of an MNIST split as torch tensors: f32 [n, 1, 28, 28] in [0, 1]
    and int64 [n], from the raw or gzip'd idx files."""
    import numpy as np, torch
    prefix = "train" if split == "train" else "t10k"

    def read(name, offset):
        path = os.path.join(data_dir("mnist"), name)
        data = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
        return np.frombuffer(data, dtype=np.uint8, offset=offset)

    lab = read(f"{prefix}-labels-idx1-ubyte", 8)
    n = len(lab) if n is None else n
    pix = read(f"{prefix}-images-idx3-ubyte", 16)[: n * 784].reshape(n, 1, 28, 28)
    return torch.from_numpy(pix.astype(np.float32) / 255.0), torch.from_numpy(lab[:n].astype(np.int64))
