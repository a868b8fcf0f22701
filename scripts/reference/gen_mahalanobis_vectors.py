#!/usr/bin/env python3
"""Reference values of advdet's Mahalanobis detector (src/detectors/mahalanobis.rs, `Gaussians`), written to
tests/fixtures/metrics/mahalanobis.json.

Computed independently of advdet's code, in NumPy, from the definitions of Lee, Lee, Lee, Shin 2018 ("A simple unified
framework for detecting out-of-distribution samples and adversarial attacks", their sample_estimator):
  - class means mu_c over the fit rows of class c;
  - one tied covariance S = 1/N sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T over all N fit rows (their
    EmpiricalCovariance on the class-centred rows);
  - shrunk S' = (1 - s) S + s tr(S)/D I, s = 0 (Lee et al.), a fixed s (scikit-learn's ShrunkCovariance), or the
    Ledoit-Wolf (2004) estimate s = min(b2, d2) / d2 with d2 = ||S - mu I||^2 and b2 = 1/N^2 sum_i ||x_i x_i^T - S||^2,
    ||A||^2 = tr(A A^T)/D, mu = tr(S)/D, x_i the class-centred rows (scikit-learn's LedoitWolf);
  - precision P = pseudo-inverse of S' from its eigendecomposition, keeping eigenvalues above D x machine epsilon x
    the largest one (scipy.linalg.pinvh's default cutoff);
  - distance of a query row f to class c: (f - mu_c)^T P (f - mu_c); the detector's score is the minimum over c.
When SciPy and scikit-learn are importable, the script also checks every value against EmpiricalCovariance,
ShrunkCovariance, LedoitWolf (assume_centered True and False) and pinvh, and fails on a disagreement.

The inputs are ReLU-like features drawn from a fixed seed and rounded to 4 decimals (exact in JSON): a full-rank case
with a dead unit (an all-zero column, as a ReLU unit that never fires) and a case with fewer fit rows than units (a
small fit set on LeNet's 500 units), where the covariance is singular and the pseudo-inverse's cutoff decides the rank.
Query rows include fit-like rows, shrunken rows (small-norm features), rows that fire the dead unit, a zero row and
outliers.

NumPy only (SciPy and scikit-learn optional, for the cross-check):
  python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install numpy scipy scikit-learn
  /tmp/gen-venv/bin/python scripts/reference/gen_mahalanobis_vectors.py
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "mahalanobis.json")
EPS = np.finfo(np.float64).eps
VARIANTS = [
    ("plain", dict(shrinkage=0.0, ledoit_wolf=False)),
    ("shrinkage_0.3", dict(shrinkage=0.3, ledoit_wolf=False)),
    ("ledoit_wolf", dict(shrinkage=0.0, ledoit_wolf=True)),
]


def features(rng, n, d, classes, dead):
    """ReLU of class centres plus correlated noise, rounded; column `dead` is all zero."""
    centres = rng.normal(0.3, 1.0, (classes, d))
    mix = rng.normal(0.0, 1.0, (d, d)) / np.sqrt(d) * rng.uniform(0.2, 1.5, d)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    f = np.maximum(centres[labels] + rng.normal(0.0, 1.0, (n, d)) @ mix.T, 0.0)
    f[:, dead] = 0.0
    return np.round(f, 4), labels, centres, mix


def queries(rng, centres, mix, dead):
    classes, d = centres.shape
    like = lambda k: np.maximum(centres[rng.integers(0, classes, k)] + rng.normal(0.0, 1.0, (k, d)) @ mix.T, 0.0)
    q = like(12)
    q[:, dead] = 0.0
    small = 0.3 * q[:6]  # small-norm features, as FGSM images give LeNet
    fired = like(4)
    fired[:, dead] = 2.0  # the dead unit fires: the pseudo-inverse must ignore that direction
    outliers = rng.normal(0.0, 4.0, (3, d)) ** 2
    return np.round(np.vstack([q, small, fired, np.zeros((1, d)), outliers]), 4)


def pinvh(a):
    """Pseudo-inverse of a symmetric matrix with scipy.linalg.pinvh's default cutoff; also the spectrum's margins."""
    w, v = np.linalg.eigh(a)
    cut = a.shape[0] * EPS * np.abs(w).max()
    keep = np.abs(w) > cut
    margins = dict(rank=int(keep.sum()), largest_dropped_over_cutoff=float(np.abs(w[~keep]).max(initial=0.0) / cut),
                   smallest_kept_over_cutoff=float(np.abs(w[keep]).min() / cut))
    return (v[:, keep] / w[keep]) @ v[:, keep].T, margins


def ledoit_wolf(x, s):
    n, d = x.shape
    mu = np.trace(s) / d
    norm2 = lambda a: np.sum(a * a) / d
    d2 = norm2(s - mu * np.eye(d))
    b2 = sum(norm2(np.outer(r, r) - s) for r in x) / n ** 2
    return min(b2, d2) / d2


def fit(f, y, classes, shrinkage, lw):
    d = f.shape[1]
    means = np.stack([f[y == c].mean(axis=0) for c in range(classes)])
    x = f - means[y]
    s = sum(np.outer(r, r) for r in x) / len(f)
    shrink = ledoit_wolf(x, s) if lw else shrinkage
    s_shrunk = (1.0 - shrink) * s + shrink * np.trace(s) / d * np.eye(d)
    precision, margins = pinvh(s_shrunk)
    return means, x, s_shrunk, precision, shrink, margins


def distances(means, precision, q):
    return np.array([[(r - m) @ precision @ (r - m) for m in means] for r in q])


def cross_check(x, cfg, cov, precision, shrink):
    """The same covariance, shrinkage and precision from scikit-learn and SciPy, when installed."""
    try:
        from scipy.linalg import pinvh as scipy_pinvh
        from sklearn.covariance import EmpiricalCovariance, LedoitWolf, ShrunkCovariance
    except ImportError:
        return False
    if cfg["ledoit_wolf"]:
        ests = [LedoitWolf(assume_centered=True).fit(x), LedoitWolf(assume_centered=False).fit(x)]
        for e in ests:
            assert abs(e.shrinkage_ - shrink) <= 1e-12 * max(1.0, shrink), (e.shrinkage_, shrink)
    elif cfg["shrinkage"] > 0:
        ests = [ShrunkCovariance(shrinkage=cfg["shrinkage"], assume_centered=True).fit(x)]
    else:  # Lee et al.'s own call: EmpiricalCovariance(assume_centered=False) on the class-centred rows
        ests = [EmpiricalCovariance(assume_centered=False).fit(x)]
    scale = np.abs(precision).max()
    for e in ests:
        assert np.allclose(e.covariance_, cov, rtol=1e-12, atol=1e-14 * np.abs(cov).max())
        assert np.abs(e.get_precision() - precision).max() <= 1e-8 * scale
    assert np.abs(scipy_pinvh(cov) - precision).max() <= 1e-8 * scale
    return True


def cases(rng):
    f, y, centres, mix = features(rng, 200, 20, 4, dead=7)
    yield "dead_unit", 4, f, y, queries(rng, centres, mix, 7), True
    f, y, centres, mix = features(rng, 30, 40, 3, dead=11)
    yield "fewer_rows_than_units", 3, f, y, queries(rng, centres, mix, 11), False


def main():
    rng = np.random.default_rng(20260418)
    out = dict(cases=[])
    for name, classes, f, y, q, with_precision in cases(rng):
        case = dict(name=name, classes=classes, fit_features=f.tolist(), fit_labels=y.tolist(), queries=q.tolist(),
                    variants=[])
        for vname, cfg in VARIANTS:
            means, x, cov, precision, shrink, margins = fit(f, y, classes, cfg["shrinkage"], cfg["ledoit_wolf"])
            checked = cross_check(x, cfg, cov, precision, shrink)
            # away from the cutoff on both sides, so another LAPACK cannot keep or drop a different eigenvalue
            assert margins["largest_dropped_over_cutoff"] < 0.1 and margins["smallest_kept_over_cutoff"] > 1e3, margins
            dist = distances(means, precision, q)
            case.setdefault("means", means.tolist())
            v = dict(name=vname, config=cfg, shrinkage=shrink, checked_against_sklearn=checked, **margins,
                     distances=dist.tolist(), scores=dist.min(axis=1).tolist())
            if with_precision:
                v["precision"] = precision.tolist()
            case["variants"].append(v)
            print(f"{name}/{vname}: shrinkage {shrink:.6f}, rank {margins['rank']}, sklearn {checked}, "
                  f"scores {dist.min(axis=1).min():.4g}..{dist.min(axis=1).max():.4g}")
        out["cases"].append(case)
    with open(OUT, "w") as fh:
        json.dump(out, fh)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
