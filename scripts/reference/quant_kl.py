"""Independent numpy implementation of TensorRT's entropy (KL) calibration.

Usage: quant_kl.py CASES.json
CASES.json is a JSON list of histograms of |x| (each a list of bin counts over [0, range)).
Prints a JSON list with one result per histogram: {"index": i, "divergences": {i: KL}}, where
the threshold is i * bin_width (the upper edge of bin i - 1), or {"index": null} when the
histogram holds no count.

The algorithm is the one NVIDIA publishes for TensorRT's entropy calibrator (GTC 2017 "8-bit
Inference with TensorRT", and its Python form in TensorRT's pytorch-quantization,
``calib/histogram.py:_compute_amax_entropy``), written here from that description:

* bins[0] is replaced by bins[1]. Bin 0 of a |x| histogram holds every exact zero; after a
  ReLU that is half the tensor or more, and no threshold can represent it better than another,
  but spreading that spike over the merged bins of Q makes every candidate with more than
  one histogram bin per quantisation level look terrible, so without this step the search
  always lands on the last candidate with one bin per level (i = 255).
* For each candidate i in 128..len(bins): P = bins[:i] with the outliers sum(bins[i:]) added
  to its last bin; Q = bins[:i] cut into 128 equal ranges (bin j goes to level
  digitize(j, linspace(0, i, 129)) - 1), each level's count spread evenly over its non-zero
  bins of bins[:i] (zero bins stay zero); KL(P || Q) of the normalised distributions
  (scipy.stats.entropy: terms with P = 0 vanish, Q = 0 under P > 0 gives infinity).
* The threshold is the upper edge of the candidate with the smallest divergence, the last one
  on ties.
"""
import json
import sys

import numpy as np

LEVELS = 128


def entropy(p, q):
    """scipy.stats.entropy(p, q) without scipy."""
    p = p / p.sum()
    q_sum = q.sum()
    if q_sum == 0:
        return float("inf")
    q = q / q_sum
    mask = p > 0
    if np.any(q[mask] == 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def kl_threshold_index(hist):
    bins = np.array(hist, dtype=np.float64)
    if bins.sum() == 0:
        return None, {}
    bins[0] = bins[1]
    divergences = {}
    for i in range(LEVELS, bins.size + 1):
        space = np.linspace(0, i, num=LEVELS + 1)
        level = np.digitize(np.arange(i), space) - 1
        level[bins[:i] == 0] = -1
        valid = level >= 0
        counts = np.bincount(level[valid], weights=bins[:i][valid], minlength=LEVELS)
        members = np.bincount(level[valid], minlength=LEVELS)
        q = np.zeros(i)
        q[valid] = counts[level[valid]] / members[level[valid]]
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divergences[i] = entropy(p, q)
    values = np.array([divergences[i] for i in range(LEVELS, bins.size + 1)])
    best = len(values) - 1 - int(np.argmin(values[::-1]))
    return LEVELS + best, divergences


def main():
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    results = []
    for hist in cases:
        index, divergences = kl_threshold_index(hist)
        # JSON has no infinity: those candidates are reported as null.
        results.append(
            {
                "index": index,
                "divergences": {
                    str(k): (v if np.isfinite(v) else None) for k, v in divergences.items()
                },
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
