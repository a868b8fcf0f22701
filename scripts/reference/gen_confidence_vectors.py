#!/usr/bin/env python3
"""Reference values of advdet's logit-only confidence detectors (src/detectors/energy.rs, maxlogit.rs, gen.rs), written
to tests/fixtures/metrics/confidence.json.

Computed independently of advdet's code, straight from the definitions, in Python's decimal arithmetic at 500
significant digits (no log-space tricks: enough digits that 1 - p of a class with p = 1 - 1e-348 is still exact):
  energy    Liu, Wang, Owens, Li 2020: E(x) = -T ln sum_c exp(f_c / T); the score is E itself (high energy = flagged)
  maxlogit  Hendrycks et al. 2022: -max_c f_c
  gen       Liu, Lochman, Zach 2023: p = softmax(f), sorted descending; G = sum_{j <= min(M, C)} p_j^g (1 - p_j)^g
            (they score confidence as -G; the score is G itself)
Every value is computed again at 600 digits and must agree to 1e-40 relative, so the digits are enough.

The logits come from a fixed NumPy seed, rounded to 4 decimals (the exact binary64 values are what the JSON holds and
what decimal.Decimal(float) reads): a 40 x 10 block of spread rows plus rows with margins of 80 and 800 (800 puts
every other class's probability below binary64's smallest number), all-equal rows, two- and three-way ties at the top,
a near-tie, and rows offset by +-1e4; and an 8 x 5 block, where M = 10 is more than the classes.

NumPy only:
  python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install numpy
  /tmp/gen-venv/bin/python scripts/reference/gen_confidence_vectors.py
"""
import decimal
import json
import os
from decimal import Decimal

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "confidence.json")

# (detector, DetectorConfig fields as JSON: what the Rust test deserialises and builds the detector from)
VARIANTS = [
    ("energy", {}),
    ("energy", {"energy": {"temperature": 2.5}}),
    ("energy", {"energy": {"temperature": 0.05}}),
    ("maxlogit", {}),
    ("gen", {}),
    ("gen", {"gen": {"gamma": 0.5, "m": 3}}),
    ("gen", {"gen": {"gamma": 0.75, "m": 1}}),
]


def ten_classes(rng):
    rows = list(rng.normal(0.0, 3.0, (26, 10)))
    for margin in (80.0, 80.0, 800.0):
        r = rng.normal(0.0, 1.0, 10)
        r[rng.integers(0, 10)] += margin
        rows.append(r)
    rows.append(np.zeros(10))  # all equal: the flattest prediction
    rows.append(np.full(10, 5.0))
    r = rng.normal(0.0, 1.0, 10)
    r[[2, 7]] = 4.0  # two-way tie at the top
    rows.append(r)
    r = rng.normal(0.0, 1.0, 10)
    r[[0, 4, 9]] = 6.5  # three-way tie at the top
    rows.append(r)
    r = rng.normal(0.0, 1.0, 10)
    r[3], r[5] = 7.0, 7.0001  # near-tie
    rows.append(r)
    rows.append(rng.normal(0.0, 2.0, 10) + 1e4)
    rows.append(rng.normal(0.0, 2.0, 10) - 1e4)
    r = rng.normal(0.0, 40.0, 10)  # widely spread
    rows.append(r)
    r = np.full(10, -80.0)
    r[6] = 0.0  # one class at 0, all others 80 below
    rows.append(r)
    rows.append(rng.normal(0.0, 0.01, 10))  # nearly flat
    rows.append(rng.normal(0.0, 8.0, 10))
    return np.round(np.array(rows), 4)


def five_classes(rng):
    rows = list(rng.normal(0.0, 3.0, (4, 5)))
    r = rng.normal(0.0, 1.0, 5)
    r[1] += 80.0
    rows.append(r)
    rows.append(np.full(5, -2.0))
    rows.append(np.array([3.0, 3.0, -1.0, 0.5, 3.0]))
    rows.append(rng.normal(0.0, 1.0, 5) + 1e4)
    return np.round(np.array(rows), 4)


def score(name, cfg, row):
    """One score of `row` (binary64 logits) at the current decimal precision."""
    f = [Decimal(float(v)) for v in row]
    if name == "maxlogit":
        return -max(f)
    if name == "energy":
        t = Decimal(cfg.get("energy", {}).get("temperature", 1.0))
        return -t * sum((v / t).exp() for v in f).ln()
    assert name == "gen"
    gamma = Decimal(cfg.get("gen", {}).get("gamma", 0.1))
    m = cfg.get("gen", {}).get("m", 10)
    e = [v.exp() for v in f]
    z = sum(e)
    p = sorted((v / z for v in e), reverse=True)[:m]
    return sum(q ** gamma * (1 - q) ** gamma for q in p)


def scores(name, cfg, logits, prec):
    with decimal.localcontext() as ctx:
        ctx.prec = prec
        return [score(name, cfg, r) for r in logits]


def main():
    rng = np.random.default_rng(20261204)
    doc = {"generator": "scripts/reference/gen_confidence_vectors.py", "numpy": np.__version__, "blocks": []}
    for block, logits in (("ten_classes", ten_classes(rng)), ("five_classes", five_classes(rng))):
        b = {"name": block, "logits": logits.tolist(), "variants": []}
        for name, cfg in VARIANTS:
            got, again = scores(name, cfg, logits, 500), scores(name, cfg, logits, 600)
            for g, a in zip(got, again):
                assert abs(g - a) <= Decimal("1e-40") * abs(a), (name, cfg, g, a)
            s = [float(v) for v in got]
            assert all(np.isfinite(s)), (name, cfg)
            # no energy is a near-cancellation of a large top logit and the log-partition's rest, where binary64
            # cannot hold 1e-9 relative (a top logit of exactly 0 is no cancellation: the test row with the others 80
            # below checks that E keeps its tiny rest, -T log1p(9 exp(-80 / T)), which underflows to -0 at T = 0.05)
            if name == "energy":
                assert all(abs(v) > 1e-3 or r.max() == 0.0 for v, r in zip(s, logits)), (block, cfg)
            b["variants"].append({"detector": name, "config": cfg, "scores": s})
            print(f"{block:12s} {name:8s} {json.dumps(cfg):34s} {min(s):.6g} .. {max(s):.6g}")
        doc["blocks"].append(b)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
