#!/usr/bin/python3
"""How sigmar-train's per-loss defaults were chosen: a small grid over each feature-space
loss's weight λ (and SNNL's temperature, σ²R's slope) on Fashion-MNIST with a fixed budget,
reporting test accuracy and intra_ratio (SPEC 3) per setting as a Markdown table.

  tools/tune_loss_defaults.py --epochs 1 --train-limit 10000 --out runs/tune

A setting is good when it lowers intra_ratio clearly without costing accuracy; the README
records the table this produced and the values picked from it."""
import argparse
import csv
import os
import subprocess
import sys

GRID = {
    "ce": [{}],
    "center": [{"lambda": v} for v in (0.003, 0.01, 0.03, 0.1)],
    "snnl": [{"lambda": v, "snnl-temperature": t} for v in (0.1, 1.0) for t in (1.0, 10.0)],
    "s2r": [{"lambda": v, "s2r-slope": k} for v in (0.003, 0.01, 0.03, 0.1) for k in (1.0,)],
}


def last_row(path):
    with open(path) as f:
        return list(csv.DictReader(f))[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/tools/sigmar-train")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--feature-dim", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--losses", nargs="*", default=list(GRID))
    ap.add_argument("--out", default="runs/tune")
    a = ap.parse_args()
    rows = []
    for loss in a.losses:
        for setting in GRID[loss]:
            name = loss + "".join(f"_{k}{v}" for k, v in setting.items())
            out = os.path.join(a.out, name)
            metrics = os.path.join(out, "metrics.csv")
            if not (os.path.exists(metrics) and int(last_row(metrics)["epoch"]) == a.epochs):
                cmd = [a.bin, "--loss", loss, "--epochs", str(a.epochs), "--train-limit",
                       str(a.train_limit), "--feature-dim", str(a.feature_dim), "--seed",
                       str(a.seed), "--out", out, "--overwrite", "--no-progress"]
                for k, v in setting.items():
                    cmd += ["--" + k, str(v)]
                print(" ".join(cmd), file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            r = last_row(metrics)
            rows.append((loss, setting, float(r["test_acc"]), float(r["intra"]),
                         float(r["intra_ratio"])))
    print(f"| loss | setting | test_acc | intra | intra_ratio |\n|---|---|---|---|---|")
    for loss, setting, acc, intra, ratio in rows:
        s = ", ".join(f"{k}={v}" for k, v in setting.items()) or "-"
        print(f"| {loss} | {s} | {acc:.4f} | {intra:.4g} | {ratio:.4g} |")


if __name__ == "__main__":
    main()
