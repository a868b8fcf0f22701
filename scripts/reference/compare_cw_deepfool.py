"""Compares advdet's DeepFool and CW-L2 with torchattacks' on the same images: success rate (among the images the
model classifies correctly) and mean L2 norm of the successful perturbations, which should agree within 10%.

    advdet attack --model M --limit 256 --attack deepfool --out df.safetensors
    advdet attack --model M --limit 256 --attack cw-l2 --c 1 --steps 50 --lr 0.01 --binary-steps 1 --out cw.safetensors
    ADVDET_REF_PYTHON=/path/to/python python3 scripts/reference/compare_cw_deepfool.py M df.safetensors cw.safetensors

torchattacks' CW has no binary search over c (fixed c, 50 Adam steps), hence advdet's run with one search step and
the same c, steps and lr. torchattacks' DeepFool steps x <- clip(x + 1.02 r) from the clipped point, so where
clipping cuts a step its points converge onto the decision boundary (margin exactly 0) and only an exact tie's
tie-break decides "fooled"; the script also reports how many of its images end on the boundary (|margin| < 1e-3). torchattacks maps pixels at exactly 0 or 1 to atanh(+-1) = +-inf, which freezes them;
Carlini & Wagner's code (and advdet) shrink by 0.999999 first. The script also reports torchattacks' CW with that one
change, to separate it from the rest. The python needs torch==2.11.0, torchattacks==3.5.1 (--no-deps, plus scipy,
tqdm, requests) and safetensors; without ADVDET_REF_PYTHON a throwaway venv is created.
"""
import os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peer  # noqa: E402




def stats(model, clean, adv, labels):
    """Success rate among the clean-correct images, mean L2 of the successes, fraction on the boundary."""
    import torch
    with torch.no_grad():
        correct = model(clean).argmax(1) == labels
        z = model(adv)
    fooled = z.argmax(1) != labels
    margin = z.gather(1, labels[:, None])[:, 0] - z.scatter(1, labels[:, None], -1e9).max(1)[0]
    won = correct & fooled
    l2 = (adv - clean).flatten(1).norm(dim=1)
    n = max(correct.sum().item(), 1)
    return (won.sum().item() / n, (l2[won].mean().item() if won.any() else float("nan")),
            (correct & ((margin.abs() < 1e-3) | fooled)).sum().item() / n)


def main(model_path, deepfool_path, cw_path):
    import torch, torchattacks
    from safetensors.torch import load_file
    sys.path.insert(0, HERE)
    from models import LeNet

    class CWShrunk(torchattacks.CW):
        def inverse_tanh_space(self, x):
            return torch.atanh((x * 2 - 1) * 0.999999)

    model = LeNet()
    model.load_state_dict({k: v.float() for k, v in load_file(model_path).items()})
    model.eval()
    rows = []
    for name, path, make in [
        ("deepfool", deepfool_path, lambda: torchattacks.DeepFool(model, steps=50, overshoot=0.02)),
        ("cw-l2", cw_path, lambda: torchattacks.CW(model, c=1, kappa=0, steps=50, lr=0.01)),
        ("cw-l2 (shrunk atanh)", cw_path, lambda: CWShrunk(model, c=1, kappa=0, steps=50, lr=0.01)),
    ]:
        f = load_file(path)
        clean, labels = f["clean"], f["labels"]
        ours = stats(model, clean, f["adversarial"], labels)
        theirs = stats(model, clean, make()(clean, labels), labels)
        rows.append((name, len(labels), ours, theirs))
    print(f"{'attack':22s} {'n':>4s} {'success advdet':>15s} {'torchattacks':>13s} {'fooled or on boundary':>22s}"
          f" {'mean L2 advdet':>15s} {'torchattacks':>13s}")
    ok = True
    for name, n, (s1, l1, _), (s2, l2, b2) in rows:
        within = abs(s1 - s2) <= 0.1 * s2 and abs(l1 - l2) <= 0.1 * l2
        ok &= within
        print(f"{name:22s} {n:4d} {s1:15.4f} {s2:13.4f} {b2:22.4f} {l1:15.4f} {l2:13.4f}  "
              f"{'within 10%' if within else 'DIFFERS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if "--inside" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--inside"]
        sys.exit(main(*args))
    else:
        peer.reexec(__file__, peer.TORCH + peer.TORCHATTACKS, peer.TORCHATTACKS_NO_DEPS)
