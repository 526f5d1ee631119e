#!/usr/bin/python3
"""The PyTorch side of tools/bench_step.sh: the same LeNet++ training step as
sigmar-bench-step (same layers, PReLU per channel, Adam, batch, threads), timed the same way.
Prints one JSON line. Run with Debian's python3-torch: /usr/bin/python3."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def lenetpp(feature_dim, classes=10):
    layers, cin = [], 1
    for width in (32, 64, 128):
        layers += [nn.Conv2d(cin, width, 5, padding=2), nn.PReLU(width),
                   nn.Conv2d(width, width, 5, padding=2), nn.PReLU(width), nn.MaxPool2d(2)]
        cin = width
    body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 3 * 3, feature_dim), nn.PReLU())
    return body, nn.Linear(feature_dim, classes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--feature-dim", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    body, head = lenetpp(a.feature_dim)
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.rand(a.batch_size, 1, 28, 28) * 3 - 1
    y = torch.randint(0, 10, (a.batch_size,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        t0 = time.perf_counter()
        loss = loss_fn(head(body(x)), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3

    for _ in range(a.warmup):
        step()
    rows, start = [], time.perf_counter()
    while len(rows) < 3 or time.perf_counter() - start < a.seconds:
        rows.append(step())
    ms = statistics.median(sum(r) for r in rows)
    print(json.dumps({
        "engine": "pytorch " + torch.__version__, "batch": a.batch_size, "threads": a.threads,
        "steps": len(rows), "ms_per_step": round(ms, 2),
        "forward_ms": round(statistics.median(r[0] for r in rows), 2),
        "backward_ms": round(statistics.median(r[1] for r in rows), 2),
        "optimizer_ms": round(statistics.median(r[2] for r in rows), 2),
        "img_per_s": round(a.batch_size * 1e3 / ms, 1)}))


if __name__ == "__main__":
    main()
