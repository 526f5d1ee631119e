#!/usr/bin/python3
"""Writes tests/fixtures/ops_v1.sgm: reference values from PyTorch for sigmar's ops.

Run with Debian's Python and torch (no network, no GPU):

    /usr/bin/python3 tools/make_op_fixtures.py

The file uses sigmar's checkpoint container (engine/tensor_file.hpp): an 8-byte little-endian
header length, a JSON header naming each buffer's dtype, shape and byte range, then the raw
little-endian bytes. tests/test_ops_reference.cpp reads it; the test never runs Python.

Every op case stores its inputs, an upstream gradient `dy` (so the backward pass is checked
for a non-trivial vector, not just ones), the forward output and the gradients PyTorch's
autograd gives for L = sum(dy * op(inputs)). Inputs come from one seeded torch.Generator.

LeNet++ is too large to store (about 0.8M weights), so its weights are not stored but made
by a formula that the C++ test repeats exactly: a multiplicative hash of the element index
gives an 11-bit integer k, and the weight is k times a power of two (exact in float32, so both
sides hold bit-identical weights). Gradients of small parameters are stored whole; those of
large ones as 256 evenly spaced entries plus their L2 norm.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

VERSION = 1
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "ops_v1.sgm")
GEN = torch.Generator().manual_seed(20240611)

# name -> (dtype tag, shape, bytes), in insertion order
BUFFERS = {}


def put(name, t):
    """Stores a tensor (float -> F32, integer -> I32) under `name`."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    if a.dtype.kind == "f":
        a, tag = a.astype("<f4"), "F32"
    else:
        a, tag = a.astype("<i4"), "I32"
    assert name not in BUFFERS, name
    BUFFERS[name] = (tag, list(a.shape), np.ascontiguousarray(a).tobytes())


def randn(*shape, scale=1.0):
    return torch.randn(*shape, generator=GEN, dtype=torch.float32) * scale


def leaf(t):
    return t.clone().requires_grad_(True)


def run_case(prefix, fn, inputs):
    """Stores inputs, y = fn(*inputs), dy, and the gradient of sum(dy*y) for each input."""
    leaves = {k: leaf(v) for k, v in inputs.items()}
    y = fn(**leaves)
    dy = randn(*y.shape)
    (y * dy).sum().backward()
    for k, v in inputs.items():
        put(f"{prefix}.{k}", v)
    put(f"{prefix}.y", y)
    put(f"{prefix}.dy", dy)
    for k, v in leaves.items():
        put(f"{prefix}.d{k}", v.grad)


def conv_cases():
    x = randn(3, 3, 5, 7)
    # stride 2, padding 1, 3x3, with bias
    run_case("conv_s2p1", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
             {"x": x, "w": randn(4, 3, 3, 3, scale=0.3), "b": randn(4, scale=0.1)})
    # LeNet++'s shape: 5x5, stride 1, padding 2, with bias
    run_case("conv_k5p2", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=2),
             {"x": x, "w": randn(4, 3, 5, 5, scale=0.2), "b": randn(4, scale=0.1)})


def pool_cases():
    # Continuous random values: ties have probability zero, so the reference is unambiguous.
    x = randn(3, 3, 5, 7)
    run_case("pool_k2s2", lambda x: F.max_pool2d(x, 2, 2), {"x": x})
    run_case("pool_k3s2", lambda x: F.max_pool2d(x, 3, 2), {"x": x})
    run_case("gap", lambda x: x.mean(dim=(2, 3)), {"x": randn(3, 3, 5, 7)})


def batch_norm_case(prefix, shape):
    C = shape[1]
    x = randn(*shape, scale=2.0) + 0.5
    rm0 = randn(C, scale=0.1)
    rv0 = torch.rand(C, generator=GEN) + 0.5
    rm, rv = rm0.clone(), rv0.clone()

    def bn(x, gamma, beta):
        return F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5)

    gamma, beta = 1.0 + randn(C, scale=0.2), randn(C, scale=0.2)
    run_case(prefix, bn, {"x": x, "gamma": gamma, "beta": beta})
    put(f"{prefix}.running_mean0", rm0)
    put(f"{prefix}.running_var0", rv0)
    put(f"{prefix}.running_mean", rm)
    put(f"{prefix}.running_var", rv)
    # Eval mode with the updated running statistics, on a fresh input, with its gradients.
    xe = randn(*shape)
    leaves = [leaf(xe), leaf(gamma), leaf(beta)]
    ye = F.batch_norm(leaves[0], rm, rv, leaves[1], leaves[2], training=False, eps=1e-5)
    dye = randn(*shape)
    (ye * dye).sum().backward()
    put(f"{prefix}.x_eval", xe)
    put(f"{prefix}.y_eval", ye)
    put(f"{prefix}.dy_eval", dye)
    for k, v in zip(("dx", "dgamma", "dbeta"), leaves):
        put(f"{prefix}.{k}_eval", v.grad)


def linear_cases():
    x = randn(3, 5)
    run_case("linear", lambda x, w, b: F.linear(x, w, b),
             {"x": x, "w": randn(4, 5, scale=0.5), "b": randn(4, scale=0.1)})
    run_case("linear_nobias", lambda x, w: F.linear(x, w), {"x": x, "w": randn(4, 5)})


def prelu_cases():
    run_case("prelu_channel", lambda x, a: F.prelu(x, a),
             {"x": randn(3, 3, 5, 7), "a": torch.tensor([0.25, -0.1, 0.6])})
    run_case("prelu_shared", lambda x, a: F.prelu(x, a),
             {"x": randn(3, 4), "a": torch.tensor([0.3])})


def softmax_ce_case():
    logits = randn(5, 7, scale=3.0)
    labels = torch.tensor([6, 0, 3, 3, 1], dtype=torch.int64)
    z = leaf(logits)
    loss = F.cross_entropy(z, labels)  # mean over the batch, as SPEC 2.1
    loss.backward()
    put("ce.logits", logits)
    put("ce.labels", labels)
    put("ce.loss", loss.reshape(1))
    put("ce.dlogits", z.grad)


# ---- LeNet++ --------------------------------------------------------------------------------

def formula_values(seed, shape, kind, exponent):
    """The weights the C++ test makes too: exact float32 values from an integer hash."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    h = (i * 2654435761 + (seed + 1) * 1013904223) % (1 << 32)
    top = h >> 21  # 11 bits: 0..2047
    if kind == "slope":
        v = ((top % 9) + 12).astype(np.float32) / np.float32(64)  # 0.1875 .. 0.3125
    else:
        v = (top - 1024).astype(np.float32) * np.float32(2.0 ** -exponent)
    return torch.from_numpy(v.reshape(shape))


def lenetpp_params(in_channels, image_size, feature_dim, num_classes):
    """(name, shape, kind) in the order sigmar's LeNet++ lists its parameters."""
    out = []
    width = [in_channels, 32, 64, 128]
    for s in range(3):
        for j, (cin, cout) in enumerate([(width[s], width[s + 1]),
                                         (width[s + 1], width[s + 1])]):
            n = str(2 * s + j + 1)
            out += [(f"conv{n}.weight", [cout, cin, 5, 5], "weight"),
                    (f"conv{n}.bias", [cout], "bias"),
                    (f"prelu{n}.slope", [cout], "slope")]
    side = image_size // 8
    out += [("fc.weight", [feature_dim, 128 * side * side], "weight"),
            ("fc.bias", [feature_dim], "bias"),
            ("fc_prelu.slope", [1], "slope"),
            ("classifier.weight", [num_classes, feature_dim], "weight"),
            ("classifier.bias", [num_classes], "bias")]
    return out


def exponent_for(shape, kind, fan_in):
    """2^-e * 1024, the largest weight, is the power of two nearest 2/sqrt(fan_in).

    Twice PyTorch's init bound: with slopes near 0.25 each layer then keeps the signal's
    scale roughly, where the default bound shrinks it about 5x a layer and the early
    layers' gradients would sink towards float32 noise.
    """
    if kind == "slope":
        return 0
    return 9 + round(math.log2(math.sqrt(fan_in)))


def lenetpp_case(meta):
    cfg = {"in_channels": 1, "image_size": 28, "feature_dim": 2, "num_classes": 10}
    spec = lenetpp_params(**cfg)
    params, plist, fan_in = {}, [], 1
    for seed, (name, shape, kind) in enumerate(spec):
        if kind == "weight":
            fan_in = int(np.prod(shape[1:]))
        e = exponent_for(shape, kind, fan_in)
        params[name] = leaf(formula_values(seed, shape, kind, e))
        plist.append({"name": name, "shape": shape, "kind": kind, "seed": seed, "exponent": e})
    meta["lenetpp"] = {"config": cfg, "params": plist}

    x = leaf(randn(2, 1, 28, 28))
    labels = torch.tensor([3, 7], dtype=torch.int64)
    h = x
    for s in range(3):
        for j in range(2):
            n = str(2 * s + j + 1)
            h = F.conv2d(h, params[f"conv{n}.weight"], params[f"conv{n}.bias"], padding=2)
            h = F.prelu(h, params[f"prelu{n}.slope"])
        h = F.max_pool2d(h, 2, 2)
    feat = F.prelu(F.linear(h.flatten(1), params["fc.weight"], params["fc.bias"]),
                   params["fc_prelu.slope"])
    logits = F.linear(feat, params["classifier.weight"], params["classifier.bias"])
    loss = F.cross_entropy(logits, labels)
    loss.backward()

    put("lenet.x", x)
    put("lenet.labels", labels)
    put("lenet.features", feat)
    put("lenet.logits", logits)
    put("lenet.loss", loss.reshape(1))
    put("lenet.dx", x.grad)
    for name, t in params.items():
        g = t.grad.flatten()
        if g.numel() <= 2500:
            put(f"lenet.grad.{name}", t.grad)
        else:
            idx = (torch.arange(256) * g.numel()) // 256
            put(f"lenet.grad.{name}.sample", g[idx])
            put(f"lenet.grad.{name}.norm", g.double().norm().reshape(1))


def write(path, meta):
    header, offset = {"__metadata__": meta}, 0
    for name, (tag, shape, data) in BUFFERS.items():
        header[name] = {"dtype": tag, "shape": shape, "data_offsets": [offset,
                                                                       offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # data starts 8-byte aligned, as sigmar writes
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, data in BUFFERS.values():
            f.write(data)
    os.replace(path + ".tmp", path)


def main():
    torch.set_num_threads(1)
    meta = {"version": VERSION, "generator": "tools/make_op_fixtures.py",
            "torch": torch.__version__}
    conv_cases()
    pool_cases()
    for prefix, shape in (("bn2d", (3, 3, 5, 7)), ("bn1d", (5, 3))):
        batch_norm_case(prefix, shape)
    linear_cases()
    prelu_cases()
    softmax_ce_case()
    lenetpp_case(meta)
    path = os.path.normpath(OUT)
    write(path, meta)
    print(f"wrote {path}: {len(BUFFERS)} buffers, {os.path.getsize(path)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
