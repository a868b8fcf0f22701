#!/usr/bin/env python3
"""Reference values of advdet's ROC metrics computed by scikit-learn, written to tests/fixtures/metrics/cases.json.

The definitions follow issue 6 (positives = adversarial):
  auroc               roc_auc_score(y, s)
  ap_adv              average_precision_score(y, s)
  ap_clean            average_precision_score(1 - y, -s)
  tpr_at_fpr_5        max TPR over the points of roc_curve(y, s, drop_intermediate=False) with FPR <= 0.05
  fpr_at_tpr_95       min FPR over those points with TPR >= 0.95
  detection_accuracy  max over those points of (TPR + 1 - FPR) / 2
The ROC curve itself (drop_intermediate=False) is stored too, without its first threshold (+inf, not valid JSON).

Run it in a throwaway virtual environment (reference vectors only, never the product path):
  python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install scikit-learn numpy
  /tmp/gen-venv/bin/python scripts/reference/gen_metric_vectors.py
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "cases.json")


def score_sets(rng):
    """(name, labels, scores): continuous, heavily tied, degenerate and badly scaled score sets."""
    n = 1000
    y = rng.random(n) < 0.4
    yield "gaussian", y, rng.normal(0.0, 1.0, n) + 1.2 * y

    n = 2000  # five distinct scores only: every threshold is a tie between both classes
    s = rng.integers(0, 5, n).astype(float)
    yield "heavy_ties", rng.random(n) < 0.15 + 0.15 * s, s

    n = 3000  # rare positives, scores rounded to two decimals
    y = rng.random(n) < 0.05
    yield "imbalanced_rounded", y, np.round(rng.beta(2, 5, n) + 0.25 * y, 2)

    y = np.arange(300) < 120
    yield "perfect", y, np.where(y, rng.uniform(0.6, 1.0, 300), rng.uniform(0.0, 0.4, 300))
    yield "inverted", y, np.where(y, rng.uniform(0.0, 0.4, 300), rng.uniform(0.6, 1.0, 300))
    yield "constant", np.arange(200) < 80, np.full(200, 0.5)

    # negative scores, -0.0 next to 0.0 (one threshold), duplicates across classes
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 1], dtype=bool)
    yield "small_signed", y, np.array([0.0, -0.0, 2.5, -1.0, -1.0, 3.0, 2.5, -7.25, 0.0, 1e-3, 2.5, -0.0])

    n = 1500  # logit-like scale with near-ties: differences of a few ulps must stay distinct thresholds
    y = rng.random(n) < 0.5
    base = 1e6 + rng.integers(0, 40, n).astype(float)
    yield "large_scale", y, base + np.where(rng.random(n) < 0.3, 2.0 ** -29, 0.0) * (1 + y)

    # two samples, one per class
    yield "two_points", np.array([True, False]), np.array([0.3, 0.7])


def case(name, y, s):
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=float)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert np.isinf(thr[0])
    expected = {
        "auroc": roc_auc_score(y, s),
        "ap_adv": average_precision_score(y, s),
        "ap_clean": average_precision_score(~y, -s),
        "tpr_at_fpr_5": tpr[fpr <= 0.05].max(),
        "fpr_at_tpr_95": fpr[tpr >= 0.95].min(),
        "detection_accuracy": ((tpr + 1 - fpr) / 2).max(),
    }
    return {
        "name": name,
        "labels": [int(v) for v in y],
        "scores": [float(v) for v in s],
        "expected": {k: float(v) for k, v in expected.items()},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds_after_inf": thr[1:].tolist()},
    }


def main():
    rng = np.random.default_rng(20240601)
    cases = [case(name, y, s) for name, y, s in score_sets(rng)]
    doc = {"generator": "scripts/reference/gen_metric_vectors.py", "sklearn": sklearn.__version__,
           "numpy": np.__version__, "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")
    os.replace(tmp, OUT)
    for c in cases:
        print(f"{c['name']:20s} n={len(c['labels']):5d} " + " ".join(f"{k}={v:.6f}" for k, v in c["expected"].items()))


if __name__ == "__main__":
    main()
