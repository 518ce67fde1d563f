"""Reference values for tests/unit/optim_test.cpp, computed by PyTorch.

Regenerate with torch >= 2.0, whose AdamW updates exp_avg with lerp_ as tune.cpp does. The pasted
values come from torch 2.11 on the device machine (its /opt/torch/.venv/bin/python3, CPU only):

    python3 tests/unit/optim_reference.py > optim_reference.inc

then paste the printed block over the one between "BEGIN optim_reference.py" and
"END optim_reference.py" in optim_test.cpp. The test itself never runs Python. Debian's torch 1.13
(/usr/bin/python3 on the dev machines) works too: its AdamW computes exp_avg as
mul_(beta1).add_(grad, alpha=1 - beta1), which differs from lerp_ by one rounding, and the test's
tolerance admits that; with the 2.11 values the test matches bit for bit.

Setup, mirrored in the test's ParamStore (declaration order w1, b1, w2; each starts on a 16-element
boundary, so the flat buffer has padding between them):
  w1 (3, 5) and w2 (17,) in a group with weight decay; b1 (7,) in a group with weight decay 0.
Initial values and the gradient of each of 5 steps are fixed float32 values, printed too, so the
test feeds exactly what torch saw. Optimizers run the single-tensor path (foreach=False).
  AdamW: betas (0.9, 0.95), eps 1e-8, weight_decay 0.1; lr 1e-2 for 3 steps then 5e-3 (as a
         scheduler would set it), in float32 and in float64.
  SGD:   momentum 0.9, weight_decay 0.01, lr 0.1 for 3 steps then 0.05, float32.
  clip_grad_norm_: the step-0 gradients with max_norm 1.0 (clips) and 100.0 (does not).
"""
import math

import torch

SHAPES = {"w1": (3, 5), "b1": (7,), "w2": (17,)}
ORDER = ["w1", "b1", "w2"]
DECAY = {"w1": True, "b1": False, "w2": True}
STEPS = 5


def lr_at(step, base, later):
    return base if step < 3 else later


def init_value(name, i):
    k = ORDER.index(name)
    return 0.5 * math.sin(0.37 * i + 1.1 * k) + 0.1 * (k - 1)


def grad_value(name, step, i):
    k = ORDER.index(name)
    g = math.cos(0.53 * i - 0.71 * step + 0.4 * k) * (1.0 + 0.5 * k) - 0.2 * step
    if name == "w2" and i == 3:
        return 0.0  # an element that never sees a gradient: m = v = 0, denominator eps
    return g


def tensors(fn, dtype):
    return {n: torch.tensor([fn(n, i) for i in range(math.prod(SHAPES[n]))],
                            dtype=torch.float32).reshape(SHAPES[n]).to(dtype) for n in ORDER}


def init(dtype):
    return {n: t.clone().requires_grad_(True)
            for n, t in tensors(lambda n, i: init_value(n, i), dtype).items()}


def grads(step, dtype):
    return tensors(lambda n, i: grad_value(n, step, i), dtype)


def groups(params, wd):
    return [{"params": [params[n] for n in ORDER if DECAY[n]], "weight_decay": wd},
            {"params": [params[n] for n in ORDER if not DECAY[n]], "weight_decay": 0.0}]


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts]).tolist()


def run(make_opt, dtype, base_lr, later_lr):
    params = init(dtype)
    opt = make_opt(params)
    trajectory = []
    for step in range(STEPS):
        g = grads(step, dtype)
        for n in ORDER:
            params[n].grad = g[n].clone()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, base_lr, later_lr)
        opt.step()
        trajectory.append(flat(params[n] for n in ORDER))
    return params, opt, trajectory


def fmt(values, digits):
    suffix = "f" if digits == 9 else ""
    items = []
    for v in values:
        s = f"{v:.{digits}g}"
        if suffix and "." not in s and "e" not in s and "inf" not in s and "nan" not in s:
            s += ".0"
        items.append(s + suffix)
    lines, line = [], "   "
    for item in items:
        if len(line) + len(item) + 2 > 98:
            lines.append(line)
            line = "   "
        line += " " + item + ","
    lines.append(line)
    return "\n".join(lines)


def emit(ctype, name, values, digits):
    print(f"const std::vector<{ctype}> {name} = {{\n{fmt(values, digits)}\n}};")


def main():
    print("// BEGIN optim_reference.py output (torch " + torch.__version__ + ")")
    emit("float", "kInit", flat(init(torch.float32)[n] for n in ORDER), 9)
    all_grads = []
    for step in range(STEPS):
        g = grads(step, torch.float32)
        all_grads += flat(g[n] for n in ORDER)
    emit("float", "kGrads", all_grads, 9)

    adamw = lambda ps: torch.optim.AdamW(groups(ps, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8,
                                         foreach=False)
    params, opt, traj = run(adamw, torch.float32, 1e-2, 5e-3)
    emit("float", "kAdamWParams", sum(traj, []), 9)
    state = [opt.state[params[n]] for n in ORDER]
    emit("float", "kAdamWExpAvg", flat(s["exp_avg"] for s in state), 9)
    emit("float", "kAdamWExpAvgSq", flat(s["exp_avg_sq"] for s in state), 9)

    params, opt, traj = run(adamw, torch.float64, 1e-2, 5e-3)
    emit("double", "kAdamWParamsF64", traj[-1], 17)

    sgd = lambda ps: torch.optim.SGD(groups(ps, 0.01), lr=0.1, momentum=0.9, foreach=False)
    params, opt, traj = run(sgd, torch.float32, 0.1, 0.05)
    emit("float", "kSgdParams", sum(traj, []), 9)

    for max_norm, name in ((1.0, "Clip"), (100.0, "NoClip")):
        params = init(torch.float32)
        g = grads(0, torch.float32)
        for n in ORDER:
            params[n].grad = g[n].clone()
        total = torch.nn.utils.clip_grad_norm_([params[n] for n in ORDER], max_norm)
        print(f"const double k{name}Norm = {total.item():.9g};")
        emit("float", f"k{name}Grads", flat(params[n].grad for n in ORDER), 9)
    print("// END optim_reference.py output")


if __name__ == "__main__":
    main()
