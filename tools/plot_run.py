#!/usr/bin/python3
# plot_run.py: draws one sigmar-train run folder. features.png is the final test features
# coloured by class (PCA to 2-D when D > 2); curves.png is test accuracy, intra-class
# variance and its ratio to the inter-class distance, per epoch, one panel each.
#   tools/plot_run.py runs/latest [--out DIR]
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sigmar_plot as sp  # noqa: E402
from sigmar_plot import plt  # noqa: E402


def draw_curves(run_dir, config, path):
    rows = sp.read_metrics(run_dir)
    if not rows:
        raise sp.RunError(f"{run_dir}/metrics.csv has no finished epoch yet")
    epoch = [r["epoch"] for r in rows]
    # One panel each: intra and intra_ratio differ in scale, and on twin axes their lines can
    # coincide and hide each other.
    panels = (("test_acc", "test accuracy", "tab:green"),
              ("intra", "intra (mean class variance)", "tab:blue"),
              ("intra_ratio", "intra_ratio = intra / inter", "tab:red"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    for ax, (key, label, colour) in zip(axes, panels):
        values = [r[key] for r in rows]
        ax.plot(epoch, values, "o-", color=colour)
        positive = [v for v in values if v > 0]
        # Variances shrink by decades under a center-type loss; a linear axis flattens them.
        if key != "test_acc" and len(positive) == len(values) and \
                max(values) > 30 * min(values):
            ax.set_yscale("log")
            label += ", log scale"
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if len(epoch) <= 12:
            ax.set_xticks(epoch)  # one tick per logged epoch, never 0.96 … 1.04
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{describe(config)}  ({run_dir}, test split)", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_features(run_dir, config, path):
    features, labels = sp.read_features(run_dir)
    names = sp.class_names(config, int(labels.max()) + 1)
    fig, ax = plt.subplots(figsize=(8, 6.5), layout="constrained")
    sp.scatter_embedding(ax, features, labels, names,
                         f"test features, {describe(config)}, N={len(labels)}")
    sp.class_legend(ax, names, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def describe(config):
    return (f"{config.get('dataset', '?')} {config.get('model', '?')}, "
            f"loss {sp.loss_name(config)}, seed {config.get('seed', '?')}, "
            f"epochs={config.get('epochs', '?')}")


def main():
    parser = argparse.ArgumentParser(description="Draw features.png and curves.png from a "
                                     "sigmar-train run folder.")
    parser.add_argument("run_dir", help="the folder given to sigmar-train --out")
    parser.add_argument("--out", help="where to write the PNGs (default: RUN_DIR)")
    args = parser.parse_args()
    out = args.out or args.run_dir
    failed = False
    try:
        config = sp.read_config(args.run_dir)
    except sp.RunError as e:
        sys.exit(f"plot_run: error: {e}")
    os.makedirs(out, exist_ok=True)
    # Each picture is drawn if its files are there, so a run without features still gets curves.
    for name, draw in (("curves.png", draw_curves), ("features.png", draw_features)):
        if draw is draw_features and \
                not os.path.exists(os.path.join(args.run_dir, "test_features.npy")):
            # Not a failure: the run was simply started without --save-features.
            print(f"plot_run: no features.png: {args.run_dir} has no test_features.npy "
                  "(train with --save-features to get it)")
            continue
        try:
            draw(args.run_dir, config, os.path.join(out, name))
            print(f"wrote {os.path.join(out, name)}")
        except sp.RunError as e:
            print(f"plot_run: error: {e}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
