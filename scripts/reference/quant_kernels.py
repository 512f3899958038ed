"""Independent numpy reference for the engine's scalar int8 kernels.

Usage: quant_kernels.py CASE.json  -> prints a JSON list of output codes.

Accumulators are exact (int64); requantisation follows the documented float32 formulation
(each numpy float32 operation rounds once, like Swift's Float; the residual term is a fused
multiply-add, emulated exactly by fma32), np.rint rounds half to even.
"""
import json
import math
import sys

import numpy as np

F = np.float32
RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def store(y, out_type):
    lo, hi = RANGES[out_type]
    return np.rint(np.clip(y, F(lo), F(hi))).astype(np.int64)


def fma32(a, b, c):
    """float32 a * b + c with a single rounding (what a hardware FMA gives).

    The float64 product of two float32 is exact; TwoSum gives the exact error of adding c,
    which only matters when the float64 sum falls exactly halfway between two float32.
    """
    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    f = s.astype(np.float32)
    lo = np.where(f.astype(np.float64) <= s, f, np.nextafter(f, F(-np.inf)))
    hi = np.nextafter(lo, F(np.inf))
    mid = (lo.astype(np.float64) + hi.astype(np.float64)) / 2
    at_mid = s == mid
    return np.where(at_mid & (err > 0), hi, np.where(at_mid & (err < 0), lo, f)).astype(F)


def requantize(acc, bias, c):
    """acc: int64 [..., oc]; returns codes per the documented formula."""
    s_in = F(c["inputScale"])
    s_w = np.array(c["weightScales"], dtype=F)
    s_out = F(c["outputScale"])
    m = (s_in * s_w) / s_out
    y = (acc.astype(F) + bias.astype(F)) * m
    if c.get("residual") is not None:
        res = np.array(c["residual"], dtype=np.int64).reshape(acc.shape)
        rs = F(c["residualScale"]) / s_out
        d = (res - c["residualZeroPoint"]).astype(F)
        y = fma32(d, np.broadcast_to(rs, d.shape).astype(F), y)
    lower, upper = c.get("clip", [None, None])
    if lower is not None:
        y = np.maximum(y, F(lower) / s_out)
    if upper is not None:
        y = np.minimum(y, F(upper) / s_out)
    y = y + F(c["outputZeroPoint"])
    return store(y, c["outputType"])


def conv2d(c):
    n, h, w, cin = c["batch"], c["height"], c["width"], c["inputChannels"]
    cout, kh, kw, groups = c["outputChannels"], c["kernelHeight"], c["kernelWidth"], c["groups"]
    sh, sw = c["strides"]
    pt, pl, pb, pr = c["pads"]
    dh, dw = c["dilations"]
    x = np.array(c["input"], dtype=np.int64).reshape(n, h, w, cin) - c["inputZeroPoint"]
    wt = np.array(c["weights"], dtype=np.int64).reshape(cout, kh, kw, cin // groups)
    # Zero padding in real units is padding with the zero point, i.e. 0 after subtracting it.
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    acc = np.zeros((n, oh, ow, cout), dtype=np.int64)
    cg, og = cin // groups, cout // groups
    for g in range(groups):
        xs = xp[..., g * cg:(g + 1) * cg]
        ws = wt[g * og:(g + 1) * og]
        for ky in range(kh):
            for kx in range(kw):
                patch = xs[:, ky * dh: ky * dh + sh * (oh - 1) + 1: sh,
                           kx * dw: kx * dw + sw * (ow - 1) + 1: sw, :]
                acc[..., g * og:(g + 1) * og] += np.einsum("nhwc,oc->nhwo", patch, ws[:, ky, kx, :])
    bias = np.array(c["bias"], dtype=np.int64) if c.get("bias") is not None else np.zeros(cout, np.int64)
    return requantize(acc, bias, c)


def gemm(c):
    m, n, k = c["m"], c["n"], c["k"]
    a = np.array(c["input"], dtype=np.int64).reshape(m, k) - c["inputZeroPoint"]
    b = np.array(c["weights"], dtype=np.int64).reshape(n, k)
    acc = a @ b.T
    bias = np.array(c["bias"], dtype=np.int64) if c.get("bias") is not None else np.zeros(n, np.int64)
    return requantize(acc, bias, c)


def add(c):
    s_out = F(c["outputScale"])
    ma = F(c["aScale"]) / s_out
    mb = F(c["bScale"]) / s_out
    a = (np.array(c["a"], dtype=np.int64) - c["aZeroPoint"]).astype(F)
    b = (np.array(c["b"], dtype=np.int64) - c["bZeroPoint"]).astype(F)
    y = a * ma + b * mb
    lower, upper = c.get("clip", [None, None])
    if lower is not None:
        y = np.maximum(y, F(lower) / s_out)
    if upper is not None:
        y = np.minimum(y, F(upper) / s_out)
    return store(y + F(c["outputZeroPoint"]), c["outputType"])


def gap(c):
    n, h, w, ch = c["batch"], c["height"], c["width"], c["channels"]
    x = np.array(c["input"], dtype=np.int64).reshape(n, h * w, ch) - c["inputZeroPoint"]
    acc = x.sum(axis=1)
    m = F(c["inputScale"]) / (F(h * w) * F(c["outputScale"]))
    return store(acc.astype(F) * m + F(c["outputZeroPoint"]), c["outputType"])


FUNCTIONS = {
    "gelu": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2.0))),
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)),
    "hardSwish": lambda x: x * min(max(x + 3, 0), 6) / 6,
    "tanh": math.tanh,
}


def lut(c):
    f = FUNCTIONS[c["function"]]
    lo, hi = RANGES[c["inputType"]]
    s_in, s_out = float(F(c["inputScale"])), float(F(c["outputScale"]))
    olo, ohi = RANGES[c["outputType"]]
    table = []
    for code in range(lo, hi + 1):
        y = f((code - c["inputZeroPoint"]) * s_in)
        table.append(int(min(max(np.rint(y / s_out) + c["outputZeroPoint"], olo), ohi)))
    return np.array(table, dtype=np.int64)


def main():
    with open(sys.argv[1]) as fh:
        case = json.load(fh)
    out = {"conv2d": conv2d, "gemm": gemm, "add": add, "gap": gap, "lut": lut}[case["kind"]](case)
    print(json.dumps([int(v) for v in np.asarray(out).reshape(-1)]))


if __name__ == "__main__":
    main()
