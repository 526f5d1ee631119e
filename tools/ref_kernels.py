#!/usr/bin/python3
"""Reference values for tests/test_kernels_*.cpp, computed with PyTorch (an independent
implementation): SGD / Adam / AdamW over three steps, softmax cross-entropy, and the soft
nearest neighbour loss written in torch directly from SPEC 2.3.

Run:  /usr/bin/python3 tools/ref_kernels.py
It prints C++ initialisers; the tests carry a copy of them and name this script. The inputs
are fixed small numbers (no RNG), so the output never changes for a given torch version.
"""
import torch

REF_VERSION = 1


def cxx(name, values, fmt="{:.9g}"):
    flat = [fmt.format(float(v)) for v in torch.as_tensor(values).flatten()]
    body = ", ".join(flat)
    return f"const std::vector<float> {name} = {{{body}}};"


# ---- optimizers: five weights, three steps with fixed gradients -------------------------
W0 = [0.5, -1.25, 2.0, 0.0, -0.75]
GRADS = [[0.1, -0.2, 0.3, -0.4, 0.5],
         [-0.3, 0.1, 0.25, 0.05, -0.6],
         [0.2, 0.2, -0.1, 0.3, 0.15]]


def run_opt(make):
    w = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float32))
    opt = make([w])
    for g in GRADS:
        w.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
    return w.detach()


def optimizers():
    print("// SGD lr 0.1, momentum 0.9, weight decay 0.01")
    print(cxx("kSgdMomentum", run_opt(lambda p: torch.optim.SGD(
        p, lr=0.1, momentum=0.9, weight_decay=0.01))))
    print("// SGD lr 0.1, momentum 0.9, Nesterov, weight decay 0.01")
    print(cxx("kSgdNesterov", run_opt(lambda p: torch.optim.SGD(
        p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True))))
    print("// SGD lr 0.05, no momentum, weight decay 0.1")
    print(cxx("kSgdPlain", run_opt(lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1))))
    print("// Adam lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 (L2)")
    print(cxx("kAdam", run_opt(lambda p: torch.optim.Adam(
        p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))))
    print("// AdamW lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 (decoupled)")
    print(cxx("kAdamW", run_opt(lambda p: torch.optim.AdamW(
        p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))))


# ---- softmax cross-entropy: 3 samples x 4 classes --------------------------------------
CE_LOGITS = [[1.5, -0.5, 0.25, 3.0],
             [-2.0, 0.0, 2.0, 1.0],
             [0.1, 0.2, 0.3, -0.4]]
CE_LABELS = [3, 0, 2]


def cross_entropy():
    z = torch.tensor(CE_LOGITS, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(CE_LABELS)
    loss = torch.nn.functional.cross_entropy(z, y)  # mean over the batch
    loss.backward()
    print("// cross-entropy (float64): loss and d loss / d logits")
    print(f"const double kCeLoss = {loss.item():.12g};")
    print(cxx("kCeGrad", z.grad))


# ---- SNNL from SPEC 2.3: 6 points in 3-D, one singleton class, T = 0.7 ------------------
SN_X = [[0.0, 1.0, -0.5],
        [0.5, 0.75, 0.0],
        [2.0, -1.0, 1.0],
        [1.5, -0.5, 1.25],
        [-1.0, 0.5, 0.5],
        [0.25, 0.0, 2.0]]
SN_LABELS = [0, 0, 1, 1, 2, 0]   # class 2 is a singleton: sample 4 is no anchor
SN_T = 0.7


def snnl_torch(x, labels, t):
    b = x.shape[0]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).clamp_min(0.0)
    a = -d / t
    eye = torch.eye(b, dtype=torch.bool)
    same = (labels[:, None] == labels[None, :]) & ~eye
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype)
    lse_all = torch.logsumexp(torch.where(eye, neg_inf, a), dim=1)
    lse_pos = torch.logsumexp(torch.where(same, a, neg_inf), dim=1)
    valid = same.any(dim=1)
    return (lse_all - lse_pos)[valid].mean()


def snnl():
    x = torch.tensor(SN_X, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(SN_LABELS)
    loss = snnl_torch(x, y, SN_T)
    loss.backward()
    print("// SNNL (float64, SPEC 2.3 in torch): loss and d loss / d x")
    print(f"const double kSnnlLoss = {loss.item():.12g};")
    print(cxx("kSnnlGrad", x.grad))
    # The SPEC's worked example, as a cross-check of this torch version itself.
    spec = snnl_torch(torch.tensor([[0.0], [1.0], [2.0], [4.0]], dtype=torch.float64),
                      torch.tensor([0, 0, 1, 1]), 1.0)
    print(f"// SPEC 2.3 worked example through the same torch code: {spec.item():.7f}")


if __name__ == "__main__":
    print(f"// tools/ref_kernels.py version {REF_VERSION}, torch {torch.__version__}")
    optimizers()
    cross_entropy()
    snnl()
