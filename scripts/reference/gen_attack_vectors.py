"""Writes the golden vectors of tests/attacks.rs into tests/fixtures/attacks/: a small LeNet (models.py's `LeNet`,
trained briefly on the first 2048 real MNIST training images, weights rounded to float16 to keep the fixture small),
the first 8 real MNIST test images, and torchattacks' FGSM, BIM, PGD-Linf, PGD-L2 (no random start) and MI-FGSM
outputs on them, untargeted and targeted. advdet must reproduce them to 1e-5.

    ADVDET_REF_PYTHON=/path/to/python python3 scripts/reference/gen_attack_vectors.py
The python needs torch==2.11.0 (the libtorch advdet links), torchattacks==3.5.1 (installed with --no-deps, plus
scipy, tqdm and requests, which it imports), safetensors and numpy. Without ADVDET_REF_PYTHON a throwaway venv is
created and those are installed into it (torch pulls about 2.7 GB).
"""
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "attacks")
sys.path.insert(0, HERE)
import peer  # noqa: E402

# eps, alpha and steps chosen so the steps matter (an eps-ball large enough to change predictions, several steps
# that hit the projection)
PARAMS = {
    "fgsm": {"attack": "fgsm", "eps": 0.2},
    "fgsm_targeted": {"attack": "fgsm", "eps": 0.2, "targeted": True},
    "bim": {"attack": "bim", "eps": 0.2, "alpha": 0.02, "steps": 10},
    "pgd_linf": {"attack": "pgd-linf", "eps": 0.2, "alpha": 0.02, "steps": 10},
    "pgd_linf_targeted": {"attack": "pgd-linf", "eps": 0.2, "alpha": 0.02, "steps": 10, "targeted": True},
    "pgd_l2": {"attack": "pgd-l2", "eps": 1.5, "alpha": 0.2, "steps": 10},
    "pgd_l2_targeted": {"attack": "pgd-l2", "eps": 1.5, "alpha": 0.2, "steps": 10, "targeted": True},
    "mifgsm": {"attack": "mifgsm", "eps": 0.2, "alpha": 0.02, "steps": 10, "decay": 1.0},
}






def small_lenet():
    import torch
    from models import LeNet
    torch.manual_seed(0)
    xs, ys = peer.mnist("train", 2048)
    model = LeNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(2):
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def main():
    import torch, torchattacks
    from safetensors.torch import save_file
    sys.path.insert(0, HERE)
    os.makedirs(OUT, exist_ok=True)
    model = small_lenet()
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, "lenet_small.safetensors"))
    images, labels = peer.mnist("test", 8)
    targets = (labels + 1) % 10
    tensors = {"images": images, "labels": labels, "targets": targets}
    for key, p in PARAMS.items():
        if p["attack"] == "fgsm":
            atk = torchattacks.FGSM(model, eps=p["eps"])
        elif p["attack"] == "bim":
            atk = torchattacks.BIM(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"])
        elif p["attack"] == "pgd-linf":
            atk = torchattacks.PGD(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=False)
        elif p["attack"] == "pgd-l2":
            atk = torchattacks.PGDL2(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=False)
        else:
            atk = torchattacks.MIFGSM(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"])
        if p.get("targeted"):
            atk.set_mode_targeted_by_label(quiet=True)
            adv = atk(images, targets)
        else:
            adv = atk(images, labels)
        tensors[key] = adv.detach().contiguous()
        with torch.no_grad():
            pred = model(adv).argmax(1)
        print(f"{key:18s} pred {pred.tolist()} (labels {labels.tolist()}, targets {targets.tolist()}), "
              f"max |delta| {(adv - images).abs().max():.4f}")
    save_file(tensors, os.path.join(OUT, "vectors.safetensors"))
    meta = {"torch": torch.__version__, "torchattacks": torchattacks.__version__, "attacks": PARAMS}
    with open(os.path.join(OUT, "params.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if "--inside" in sys.argv:
        main()
    else:
        peer.reexec(__file__, peer.TORCH + peer.TORCHATTACKS, peer.TORCHATTACKS_NO_DEPS)
