#!/usr/bin/env python3
"""Reference values of advdet's feature squeezers (src/detectors/squeeze.rs) and ReAct's clipped energy
(src/detectors/react.rs), written to tests/fixtures/metrics/squeeze.json.

Computed independently of advdet's code, the way the authors' code does it:
  bit depth  Xu, Evans, Qi 2018 (EvadeML-Zoo `reduce_precision_py`): rint(x (2^b - 1)) / (2^b - 1) in float32
  median     their `median_filter_py`: scipy.ndimage.median_filter(x, size=(1, s, s, 1), mode="reflect") on NHWC
             images; checked here against a plain loop (window offsets -(s//2) .. s-1-s//2, the edge repeated when
             mirrored, the element of rank s*s//2 of the sorted window), so the alignment scipy picks for an even s
             is written down, not assumed
  ReAct      Sun, Guo, Li 2021: c = np.percentile(fit_features.flatten(), p); score = -logsumexp(min(h, c) W^T + b)
             (the energy at T = 1), in float64 with scipy.special.logsumexp

The images are small and hand-made: a 2 x 1 x 5 x 6 grey pair (one with values on the rounding boundaries of 1 and 5
bits, one random) and a 1 x 3 x 4 x 7 colour image; every value is a float32. The ReAct block holds fit features with
exact zeros (as ReLU outputs have), test features, a last layer 64 -> 10 (the ResNet-20 head's shape) and the
thresholds and scores at several percentiles.

NumPy and SciPy:
  python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install numpy scipy
  /tmp/gen-venv/bin/python scripts/reference/gen_squeeze_vectors.py
"""
import json
import os

import numpy as np
import scipy
import scipy.ndimage
import scipy.special

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "squeeze.json")
BITS = [1, 2, 5, 8]
MEDIANS = [2, 3, 4, 5]
PERCENTILES = [90.0, 50.0, 99.5, 45.0, 0.1]


def grey_images(rng):
    # levels k/2 (1 bit) and k/62 (5 bits) sit on rounding boundaries; rint rounds them half to even
    a = np.array(
        [
            [0.0, 0.5, 1.0, 0.25, 0.75, 0.49],
            [0.51, 1 / 62, 3 / 62, 0.5, 0.0, 1.0],
            [1.0, 1.0, 0.0, 0.0, 0.3, 0.7],
            [0.9, 0.1, 0.5, 0.5, 0.2, 0.8],
            [0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
        ]
    )
    b = rng.random((5, 6))
    return np.stack([a, b])[:, None].astype(np.float32)


def colour_image(rng):
    return rng.random((1, 3, 4, 7)).astype(np.float32)


def bit_depth(x, bits):
    levels = 2**bits - 1
    out = np.rint(x * levels) / levels
    assert out.dtype == np.float32
    return out


def median_scipy(x, s):
    nhwc = np.transpose(x, (0, 2, 3, 1))
    out = scipy.ndimage.median_filter(nhwc, size=(1, s, s, 1), mode="reflect")
    return np.transpose(out, (0, 3, 1, 2))


def median_loop(x, s):
    """The same filter written out: offsets -(s//2) .. s-1-s//2, mirrored borders, rank s*s//2 of the window."""

    def src(i, n):
        j = i % (2 * n)
        return j if j < n else 2 * n - 1 - j

    b, c, h, w = x.shape
    out = np.empty_like(x)
    offs = range(-(s // 2), s - s // 2)
    for n in range(b):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    win = sorted(x[n, k, src(i + di, h), src(j + dj, w)] for di in offs for dj in offs)
                    out[n, k, i, j] = win[s * s // 2]
    return out


def squeeze_block(name, x):
    b = {"name": name, "images": x.tolist(), "bit_depth": [], "median": []}
    for bits in BITS:
        b["bit_depth"].append({"bits": bits, "images": bit_depth(x, bits).tolist()})
    for s in MEDIANS:
        m = median_scipy(x, s)
        assert np.array_equal(m, median_loop(x, s)), (name, s)
        b["median"].append({"size": s, "images": m.tolist()})
    return b


def react_block(rng):
    fit = np.maximum(rng.normal(0.2, 1.0, (60, 64)), 0.0)  # ReLU outputs: about 40% exact zeros
    fit[:, 5] = 0.0  # a dead unit
    feats = np.maximum(rng.normal(0.3, 1.5, (12, 64)), 0.0)
    feats[3] *= 8.0  # large activations, clipped hard
    feats[4] = 0.0  # all zero: the bias alone
    weight = rng.normal(0.0, 0.3, (10, 64))
    bias = rng.normal(0.0, 0.5, 10)
    fit, feats, weight, bias = (np.float32(v).astype(np.float64) for v in (fit, feats, weight, bias))
    cases = []
    for p in PERCENTILES:
        c = float(np.percentile(fit.flatten(), p))
        logits = np.minimum(feats, c) @ weight.T + bias
        scores = -scipy.special.logsumexp(logits, axis=1)
        cases.append({"percentile": p, "threshold": c, "scores": scores.tolist()})
    return {
        "fit_features": fit.tolist(),
        "features": feats.tolist(),
        "weight": weight.tolist(),
        "bias": bias.tolist(),
        "cases": cases,
    }


def main():
    rng = np.random.default_rng(20261205)
    doc = {
        "generator": "scripts/reference/gen_squeeze_vectors.py",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "squeeze": [squeeze_block("grey", grey_images(rng)), squeeze_block("colour", colour_image(rng))],
        "react": react_block(rng),
    }
    # the alignment an even width gets, on one line: the pixel and the one before it, upper of the two
    line = np.array([5.0, 1.0, 7.0, 3.0, 9.0], np.float32)
    assert scipy.ndimage.median_filter(line, size=2, mode="reflect").tolist() == [5.0, 5.0, 7.0, 7.0, 9.0]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, OUT)
    for c in doc["react"]["cases"]:
        print(f"react p {c['percentile']:5}: threshold {c['threshold']:.6f}, scores {min(c['scores']):.4f} .. "
              f"{max(c['scores']):.4f}")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
