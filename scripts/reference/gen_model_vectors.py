"""Writes tests/fixtures/models/<arch>.safetensors (PyTorch state_dict, weights rounded to float16 to keep the fixture
small) and <arch>_io.safetensors (`inputs`: real images, `logits`: PyTorch's eval-mode logits) for every architecture of
models.py, so tests can check that advdet loads PyTorch weights and computes the same logits.

    ADVDET_REF_PYTHON=/path/to/python-with-torch python3 scripts/reference/gen_model_vectors.py
Without ADVDET_REF_PYTHON it creates a throwaway venv and installs torch==2.11.0 and safetensors into it (about 2.7 GB).
"""
import os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
sys.path.insert(0, HERE)
import peer  # noqa: E402





def cifar_images(n):
    import numpy as np, torch
    raw = open(os.path.join(ROOT, "tests", "fixtures", "cifar10", "test_batch.bin"), "rb").read()
    recs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)[:n, 1:].reshape(n, 3, 32, 32)
    return torch.from_numpy(recs.astype(np.float32) / 255.0)


def main():
    import torch
    from safetensors.torch import save_file
    sys.path.insert(0, HERE)
    from models import ARCHS
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for name, cls in ARCHS.items():
        model = cls()
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial running statistics and affine terms
                    mod.running_mean.uniform_(-0.2, 0.2)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.8, 1.2)
                    mod.bias.uniform_(-0.1, 0.1)
            for p in model.state_dict().values():
                if p.is_floating_point():
                    p.copy_(p.half().float())
        model.eval()
        x = peer.mnist("test", 8)[0] if name == "lenet" else cifar_images(8)
        with torch.no_grad():
            logits = model(x)
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(OUT, f"{name}.safetensors"))
        save_file({"inputs": x.contiguous(), "logits": logits.contiguous()}, os.path.join(OUT, f"{name}_io.safetensors"))
        print(name, "tensors", len(state), "logits[0]", [round(v, 4) for v in logits[0].tolist()[:4]])


if __name__ == "__main__":
    if "--inside" in sys.argv:
        main()
    else:
        peer.reexec(__file__, peer.TORCH)
