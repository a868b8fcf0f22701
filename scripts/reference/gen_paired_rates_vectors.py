#!/usr/bin/env python3
"""Reference values of advdet's paired rates (src/metrics/proportions.rs), written to
tests/fixtures/metrics/paired_rates.json.

Each case is a 2x2 table of images (both, only_a, only_b, neither): counted under a and b, under a only, under b only,
under neither. Computed with statsmodels, independently of advdet's code:
  - McNemar's exact test: statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue;
  - the Wilson score limits of each rate: statsmodels.stats.proportion.proportion_confint(method="wilson");
  - Newcombe's square-and-add interval of rate_b - rate_a (Stat. Med. 1998, 17:2635, method 10), with the phi
    coefficient of the table (0 where a margin is empty, no continuity correction):
      L = d - sqrt((p_b - l_b)^2 - 2 phi (p_b - l_b)(u_a - p_a) + (u_a - p_a)^2)
      U = d + sqrt((u_b - p_b)^2 - 2 phi (u_b - p_b)(p_a - l_a) + (p_a - l_a)^2)

  python3 -m venv /tmp/sm && /tmp/sm/bin/pip install numpy scipy statsmodels
  /tmp/sm/bin/python scripts/reference/gen_paired_rates_vectors.py
"""
import json
import math
import os

from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "paired_rates.json")

CASES = [
    (40, 5, 60, 395),    # a run of 500 images: the second route evaded far more often
    (200, 31, 40, 229),  # many concordant, a few discordant each way
    (3, 0, 7, 20),       # small counts, one-sided discordance
    (10, 10, 10, 10),    # balanced: delta 0
    (0, 0, 0, 12),       # nothing evades either
    (0, 0, 500, 0),      # everything under b only: empty margins, phi 0
    (1, 2, 0, 1),        # tiny
    (480, 2, 15, 3),     # near the ceiling
]


def case(both, only_a, only_b, neither):
    n = both + only_a + only_b + neither
    xa, xb = both + only_a, both + only_b
    pa, pb = xa / n, xb / n
    la, ua = proportion_confint(xa, n, alpha=0.05, method="wilson")
    lb, ub = proportion_confint(xb, n, alpha=0.05, method="wilson")
    margins = xb * (n - xb) * xa * (n - xa)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins > 0 else 0.0
    d = pb - pa
    lo = d - math.sqrt(max((pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2, 0.0))
    hi = d + math.sqrt(max((ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2, 0.0))
    # rows: a evaded / not; columns: b evaded / not
    table = [[both, only_a], [only_b, neither]]
    p = float(mcnemar(table, exact=True).pvalue) if only_a + only_b > 0 else 1.0
    return {
        "table": [both, only_a, only_b, neither],
        "wilson_a": [float(la), float(ua)],
        "wilson_b": [float(lb), float(ub)],
        "delta": d,
        "lo": lo,
        "hi": hi,
        "p": p,
    }


def main():
    out = [case(*c) for c in CASES]
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(out)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
