"""Markdown tables from the criterion results in target/criterion (after `make bench`): for each group, the mean time
per iteration and the throughput, and for the attacks the ratio to the forward+backward bound of the same batch
(one pass for FGSM, 10 or 40 for PGD, 10 for CW-L2 with its 10 Adam steps and early abort off).

    python3 scripts/compare/bench_table.py [target/criterion]

It prints every result criterion has kept there, including those of benches or sizes no longer in the code: remove
target/criterion first for a clean table.
"""
import json, os, sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "target", "criterion")
PASSES = {"fgsm": 1, "pgd-linf-10": 10, "pgd-linf-40": 40, "cw-l2-10x1": 10}


def results():
    """{(group, function, parameter): (mean seconds, elements per iteration or None)}."""
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        if "benchmark.json" in files and os.path.basename(dirpath) == "new":
            b = json.load(open(os.path.join(dirpath, "benchmark.json")))
            e = json.load(open(os.path.join(dirpath, "estimates.json")))
            elems = (b.get("throughput") or {}).get("Elements")
            out[(b["group_id"], b.get("function_id") or "", b.get("value_str") or "")] = (e["mean"]["point_estimate"] / 1e9, elems)
    return out


def fmt(s):
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def main():
    r = results()
    groups = sorted({g for g, _, _ in r})
    for g in groups:
        rows = sorted(((f, v) for gg, f, v in r if gg == g), key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0))
        print(f"\n**{g}**\n")
        attack = g.startswith("attack/")
        unit = "images/s" if attack or g.startswith("subnet") else "scores/s"
        size = "batch" if attack or g.startswith("subnet") else "scores"
        print(f"| bench | {size} | time | {unit} |" + (" / bound |" if attack else "") + "\n|---|---|---|---|" + ("---|" if attack else ""))
        for f, v in rows:
            s, n = r[(g, f, v)]
            line = f"| {f} | {v} | {fmt(s)} | {n / s:,.0f} |" if n else f"| {f} | {v} | {fmt(s)} | |"
            if attack:
                bound = r.get((g, "forward-backward", v))
                line += f" {s / (bound[0] * PASSES[f]):.2f} |" if bound and f in PASSES else " |"
            print(line)


if __name__ == "__main__":
    main()
