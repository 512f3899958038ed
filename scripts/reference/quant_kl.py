"""Independent numpy implementation of TensorRT/MXNet entropy (KL) calibration.

Usage: quant_kl.py HIST.json  (a JSON list of bin counts of |x|)
Prints JSON {"index": i, "divergences": {i: KL}} where the threshold is i * bin_width.
Follows MXNet's _get_optimal_threshold restricted to |x|: P = hist[:i] with outliers added
to its last bin, Q = hist[:i] merged into 128 levels (remainder into the last) and expanded
over P's non-zero bins, both smoothed with eps = 1e-4, KL of the normalised distributions.
"""
import json
import sys

import numpy as np


def smooth(d, eps=0.0001):
    is_zeros = (d == 0).astype(np.float64)
    is_nonzeros = (d != 0).astype(np.float64)
    n_zeros = is_zeros.sum()
    n_nonzeros = d.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = eps * n_zeros / n_nonzeros
    return d.astype(np.float64) + eps * is_zeros - eps1 * is_nonzeros


def entropy(p, q):
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def main():
    with open(sys.argv[1]) as fh:
        hist = np.array(json.load(fh), dtype=np.int64)
    levels = 128
    divergences = {}
    for i in range(levels, hist.size + 1):
        sliced = hist[:i].astype(np.float64)
        p = sliced.copy()
        p[-1] += hist[i:].sum()
        nonzero = (p != 0).astype(np.int64)
        merged = i // levels
        quantized = np.array([sliced[j * merged:(j + 1) * merged].sum() for j in range(levels)])
        quantized[-1] += sliced[levels * merged:].sum()
        q = np.zeros(i)
        for j in range(levels):
            start = j * merged
            stop = i if j == levels - 1 else start + merged
            norm = nonzero[start:stop].sum()
            if norm:
                q[start:stop] = quantized[j] / norm
        q[p == 0] = 0
        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            continue
        divergences[i] = entropy(ps, qs)
    best = min(divergences, key=lambda k: (divergences[k], k))
    print(json.dumps({"index": best, "divergences": divergences}))


if __name__ == "__main__":
    main()
