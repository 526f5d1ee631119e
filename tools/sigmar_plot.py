# Shared helpers of tools/plot_run.py and tools/compare_losses: reading a sigmar-train run
# folder (config.json, metrics.csv, test_features.npy, test_labels.npy), projecting features
# to 2-D by PCA, and drawing one embedding scatter into a matplotlib axis.
import csv
import json
import math
import os

import matplotlib

matplotlib.use("Agg")  # files only; the tools never open a window
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402

CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
}


class RunError(Exception):
    """A run folder lacks a file, or holds one that cannot be read; the message says which."""


def read_config(run_dir):
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise RunError(f"{path} not found: is {run_dir} a sigmar-train run folder (--out)?")
    with open(path) as f:
        return json.load(f)


def loss_name(config):
    """The --loss a run was started with (config.json says "none" for plain cross-entropy)."""
    kind = config.get("loss", "?")
    return "ce" if kind == "none" else kind


def read_metrics(run_dir):
    """metrics.csv as a list of dicts of floats, one per epoch in order. A resumed run can log
    an epoch twice; the later line wins."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        raise RunError(f"{path} not found: is {run_dir} a sigmar-train run folder (--out)?")
    by_epoch = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                values = {k: float(v) for k, v in row.items()}
            except (TypeError, ValueError):
                continue  # a line cut short by an interrupted run
            by_epoch[int(values["epoch"])] = values
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_features(run_dir):
    """Returns (features [N, D] float32, labels [N] int)."""
    paths = [os.path.join(run_dir, n) for n in ("test_features.npy", "test_labels.npy")]
    for p in paths:
        if not os.path.exists(p):
            raise RunError(f"{p} not found: run sigmar-train with --save-features to get "
                           "test_features.npy and test_labels.npy (written after the last "
                           "epoch)")
    features, labels = np.load(paths[0]), np.load(paths[1])
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise RunError(f"{run_dir}: features {features.shape} and labels {labels.shape} "
                       "do not match ([N, D] and [N])")
    return features, labels


def class_names(config, num_classes):
    names = CLASS_NAMES.get(config.get("dataset"), [])
    return names if len(names) >= num_classes else [str(j) for j in range(num_classes)]


def to_2d(features):
    """Returns (points [N, 2], axis labels, note for the title). D = 2 is drawn as is; wider
    features are projected onto their two leading principal components (SVD of the centered
    matrix); D = 1 is drawn against a zero second axis."""
    n, d = features.shape
    x = features.astype(np.float64)
    if d == 2:
        return x, ("feature 0", "feature 1"), "D=2, drawn as is"
    if d == 1:
        return np.hstack([x, np.zeros((n, 1))]), ("feature 0", ""), "D=1"
    centered = x - x.mean(axis=0)
    # centered = U S Vᵀ; the rows of Vᵀ are the principal directions, S² the variances (×n).
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    share = s**2 / max(np.sum(s**2), 1e-300)
    labels = tuple(f"PC{k + 1} ({100 * share[k]:.0f}% of variance)" for k in range(2))
    return centered @ vt[:2].T, labels, f"PCA of D={d} to 2-D"


def class_colour(j, num_classes):
    """Ten well-separated colours for up to ten classes, a hue wheel beyond."""
    return plt.get_cmap("tab10" if num_classes <= 10 else "hsv", num_classes)(j)


def scatter_embedding(ax, features, labels, names, title):
    """Draws the features coloured by class into ax; returns the note from to_2d."""
    points, axis_labels, note = to_2d(features)
    size = float(np.clip(20000 / max(len(labels), 1), 1.5, 8))  # dots shrink as N grows
    for j in range(len(names)):
        mine = labels == j
        ax.scatter(points[mine, 0], points[mine, 1], s=size, alpha=0.6,
                   color=class_colour(j, len(names)),
                   label=names[j], rasterized=True, linewidths=0)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(f"{title}\n{note}", fontsize=10)
    return note


def class_legend(owner, names, **kwargs):
    """A legend with visible markers (the scatter's own are tiny and half clear)."""
    handles = [plt.Line2D([], [], ls="", marker="o", ms=6, color=class_colour(j, len(names)))
               for j in range(len(names))]
    return owner.legend(handles, names, title="class", fontsize=8, **kwargs)


def mean_std(values):
    """(mean, sample standard deviation); the deviation is nan for fewer than two values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
