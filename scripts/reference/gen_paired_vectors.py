#!/usr/bin/env python3
"""Reference values of advdet's paired comparison (src/metrics/paired.rs), written to tests/fixtures/metrics/paired.json.

Computed independently of advdet's algorithm, in NumPy, straight from the definitions:
  - DeLong, DeLong & Clarke-Pearson (1988): the structural components from the full m x n comparison matrix
    psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise (advdet uses Sun & Xu's midrank algorithm instead);
    V10_i = mean_j psi(X_i, Y_j), V01_j = mean_i psi(X_i, Y_j); S10, S01 their sample covariance matrices (ddof 1);
    var(AUC_b - AUC_a) = c' (S10 / m + S01 / n) c with c = (-1, 1); z = delta / sqrt(var); p = erfc(|z| / sqrt 2);
  - one paired resample: given counts per adversarial and per clean image, AUROC as the weighted Mann-Whitney
    statistic sum_ij w_i w_j psi / (sum w_i sum w_j), and TPR at FPR <= 5% as the largest weighted TPR over the thresholds
    (every distinct score, and +inf) whose weighted FPR is at most 0.05;
  - Holm's adjustment of a list of p-values.
The score sets have heavy ties (a handful of distinct values), as detectors' saturated softmax scores do.

Standard library and NumPy only:
  python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install numpy
  /tmp/gen-venv/bin/python scripts/reference/gen_paired_vectors.py
"""
import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "paired.json")


def psi(x, y):
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def delong(y, a, b):
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, auc = [], [], []
    for s in (a, b):
        k = psi(s[pos], s[neg])
        v10.append(k.mean(axis=1))
        v01.append(k.mean(axis=0))
        auc.append(k.mean())
    s10, s01 = np.cov(np.array(v10), ddof=1), np.cov(np.array(v01), ddof=1)
    c = np.array([-1.0, 1.0])
    var = c @ (s10 / m + s01 / n) @ c
    delta = auc[1] - auc[0]
    z = delta / math.sqrt(var)
    return dict(auroc_a=auc[0], auroc_b=auc[1], delta=delta, variance=var, z=z, p=math.erfc(abs(z) / math.sqrt(2)))


def weighted(y, s, wp, wn):
    x, w_x = s[y == 1], wp.astype(float)
    z, w_z = s[y == 0], wn.astype(float)
    auc = (w_x[:, None] * w_z[None, :] * psi(x, z)).sum() / (w_x.sum() * w_z.sum())
    best = 0.0
    for t in np.r_[np.inf, np.unique(s)]:
        tpr = w_x[x >= t].sum() / w_x.sum()
        fpr = w_z[z >= t].sum() / w_z.sum()
        if fpr <= 0.05:
            best = max(best, tpr)
    return auc, best


def holm(p):
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adj[i] = running
    return adj.tolist()


def cases(rng):
    n = 300  # five distinct values; b is a noisier view of the same images
    y = (rng.random(n) < 0.4).astype(int)
    base = rng.normal(0, 1, n) + 1.0 * y
    yield "heavy_ties", y, np.round(np.clip(base, -2, 2)), np.round(np.clip(base + rng.normal(0, 1, n), -2, 2))
    n = 400  # a saturated detector: most scores exactly 0, the rest on a coarse grid
    y = (rng.random(n) < 0.3).astype(int)
    a = np.where(rng.random(n) < 0.6, 0.0, np.round(rng.beta(2, 3, n) + 0.3 * y, 1))
    b = np.where(rng.random(n) < 0.5, 0.0, np.round(rng.beta(2, 3, n) + 0.4 * y, 1))
    yield "saturated", y, a, b
    n = 250  # continuous, strongly correlated
    y = (rng.random(n) < 0.5).astype(int)
    a = rng.normal(0, 1, n) + 0.8 * y
    yield "correlated", y, a, a + 0.3 * rng.normal(0, 1, n) + 0.2 * y


def main():
    rng = np.random.default_rng(20261204)
    out = {"cases": [], "holm": {}}
    for name, y, a, b in cases(rng):
        case = dict(name=name, labels=y.tolist(), a=a.tolist(), b=b.tolist(), delong=delong(y, a, b), resamples=[])
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        for _ in range(3):
            wp = rng.multinomial(n_pos, np.ones(n_pos) / n_pos)
            wn = rng.multinomial(n_neg, np.ones(n_neg) / n_neg)
            auc_a, tpr_a = weighted(y, a, wp, wn)
            auc_b, tpr_b = weighted(y, b, wp, wn)
            case["resamples"].append(dict(pos_counts=wp.tolist(), neg_counts=wn.tolist(), delta_auroc=auc_b - auc_a,
                                          delta_tpr_at_fpr_5=tpr_b - tpr_a))
        out["cases"].append(case)
    p = [0.0004, 0.2, 0.013, 0.049, 0.9, 0.013, 1e-9, 0.03]
    out["holm"] = dict(p=p, adjusted=holm(p))
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
