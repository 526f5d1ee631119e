#!/usr/bin/env python3
"""Renders `sigmar-kernels bench --json FILE` output as the Markdown table of tools/KERNELS.md.

Usage: tools/bench_table.py FILE.json [FILE.json ...] > table.md
Each file holds one bench run (or, as tools/kernels_bench_cpu.json does, {"runs": [...]}).
"""
import json
import sys


def runs_of(path):
    with open(path) as f:
        doc = json.load(f)
    return doc["runs"] if "runs" in doc else [doc]


def fmt_us(us):
    return f"{us:.1f}"


def row_lines(r):
    size = r["size"] + (f" {r['params']}" if r["params"] else "")
    limit = f"{100 * r['fraction_of_limit']:.0f}% {r['bound']}"
    lines = []
    for n, ref in enumerate(r["references"]):
        if ref.get("verifies"):
            check = f"{ref['max_rel_error']:.0e} ({ref['tolerance']:.0e})"
        else:
            check = "a bound"
        ratio = f"{ref['ratio_ref_over_ours']:.2f}"
        if n == 0:
            lines.append(f"| {r['kernel']} | {size} | {fmt_us(r['us'])} | {r['GBps']:.1f} | "
                         f"{r['GFLOPps']:.1f} | {limit} | {ref['name']} | {fmt_us(ref['us'])} | "
                         f"{ratio} | {check} |")
        else:
            lines.append(f"| | | | | | | {ref['name']} | {fmt_us(ref['us'])} | {ratio} | {check} |")
    return lines


def main(paths):
    print("| kernel | size | ours µs | GB/s | GFLOP/s | of limit | reference | ref µs "
          "| ref / ours | max rel. error (tol.) |")
    print("|---|---|--:|--:|--:|--:|---|--:|--:|---|")
    for path in paths:
        for run in runs_of(path):
            for r in run["rows"]:
                print("\n".join(row_lines(r)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
