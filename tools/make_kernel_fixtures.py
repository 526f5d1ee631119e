#!/usr/bin/python3
"""Writes tests/fixtures/kernels/*.npy: inputs for `sigmar-kernels run` in the tests
(tests/test_kernels_tool.cpp), saved by NumPy itself in the dtypes and layouts the tool must
read or refuse, and Adam/AdamW results computed by PyTorch to compare `run adam` with.

Run with Debian's Python, NumPy and torch (no network, no GPU):

    /usr/bin/python3 tools/make_kernel_fixtures.py

Values are fixed small numbers (no RNG), so the files only change with a NumPy or torch that
computes differently.
"""
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "kernels")


def save(name, array):
    np.save(os.path.join(OUT, name + ".npy"), array)


def spec_examples():
    # SPEC 2.2 (and CASES 6, 20): centers (0,0), (1,1), (5,-5); batch (1,0), (3,0), (5,5);
    # labels 0, 0, 1. Features in float32, centers in float64 (the tool converts), labels in
    # each integer dtype it accepts.
    save("center_features", np.array([[1, 0], [3, 0], [5, 5]], dtype=np.float32))
    save("center_centers_f64", np.array([[0, 0], [1, 1], [5, -5]], dtype=np.float64))
    save("center_labels_i64", np.array([0, 0, 1], dtype=np.int64))
    save("center_labels_i32", np.array([0, 0, 1], dtype=np.int32))
    save("center_labels_u8", np.array([0, 0, 1], dtype=np.uint8))
    save("s2r_variances_ones", np.ones(3, dtype=np.float32))
    # SPEC 2.3: 1-D points 0, 1, 2, 4 with labels 0, 0, 1, 1.
    save("snnl_features", np.array([[0], [1], [2], [4]], dtype=np.float32))
    save("snnl_labels", np.array([0, 0, 1, 1], dtype=np.uint8))
    # CASES 1: z = [1e8, 1e8], y = 1.
    save("ce_logits", np.array([[1e8, 1e8]], dtype=np.float32))
    save("ce_labels", np.array([1], dtype=np.int32))


def refused():
    # Each of these must be refused with a message that names the problem.
    save("bad_features_fortran", np.asfortranarray(np.array([[1, 0], [3, 0], [5, 5]],
                                                            dtype=np.float32)))
    save("bad_features_bigendian", np.array([[1, 0], [3, 0], [5, 5]], dtype=">f4"))
    save("bad_labels_f32", np.array([0, 0, 1], dtype=np.float32))
    save("bad_labels_range", np.array([0, 0, 5], dtype=np.int32))
    save("bad_centers_wide", np.zeros((3, 3), dtype=np.float32))
    save("bad_labels_2d", np.array([[0], [0], [1]], dtype=np.int32))


def adam():
    # One step from a mid-training state (step 2 done): PyTorch's Adam (L2) and AdamW.
    w0 = np.array([0.5, -1.25, 2.0, 0.0, -0.75], dtype=np.float32)
    g = np.array([0.1, -0.2, 0.3, -0.4, 0.5], dtype=np.float32)
    m0 = np.array([0.02, -0.01, 0.05, 0.0, -0.03], dtype=np.float32)
    v0 = np.array([1e-3, 4e-4, 2e-3, 1e-4, 9e-4], dtype=np.float32)
    for name, data in (("params", w0), ("grads", g), ("m", m0), ("v", v0)):
        save("adam_" + name, data)
    for tag, make in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        w = torch.nn.Parameter(torch.tensor(w0))
        opt = make([w], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        w.grad = torch.tensor(g)
        opt.state[w] = {"step": torch.tensor(2.0), "exp_avg": torch.tensor(m0),
                        "exp_avg_sq": torch.tensor(v0)}
        opt.step()
        state = opt.state[w]
        save(tag + "_expected_params", w.detach().numpy().astype(np.float32))
        save(tag + "_expected_m", state["exp_avg"].numpy().astype(np.float32))
        save(tag + "_expected_v", state["exp_avg_sq"].numpy().astype(np.float32))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    spec_examples()
    refused()
    adam()
    print("wrote", os.path.normpath(OUT))
