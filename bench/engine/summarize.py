#!/usr/bin/env python3
"""Markdown tables of a bench/engine/run.sh measurement directory.

Usage: summarize.py OUT --threads N --rounds R --policies "default passive" --models t0 t1 …

Reads, per model m, round r and policy p: OUT/m-p-rR.json (`imagenet-eval bench --json`),
OUT/m-ort-rR.json and, when int8 was measured, OUT/m-ort-int8-rR.json (ort_bench.py) and
OUT/m-imported-rR.json (our int8 engine running that same QDQ file). Every
figure is a median over the rounds; a ratio is the median of the per-round ratios (both sides
of a round were measured within seconds of each other), with their range when R > 1. With
R > 1 the float table also gives the ratio of each side's best round: on a shared VM other
guests slow some rounds of either side, and the best round is the nearest to each side's
uncontended speed.

When OUT has fma-peak-before.txt / fma-peak-after.txt and m-fma-peak-rR.txt (run.sh's
fma_peak, the last measured right before model m's round R), a third table puts both float
engines' throughput in GFLOP/s (direct-convolution count, flops.py) against the peak measured
before the same round (median over rounds of the per-round shares), and says what share of it a
1.1× lead over onnxruntime would take.
"""
import argparse
import json
import statistics
from pathlib import Path

from flops import direct_flops


def load(path: Path, engine: str | None = None) -> dict[int, float]:
    """images/s by batch size of one run (our JSON holds several engines)."""
    results = json.loads(path.read_text())["results"]
    return {r["batch_size"]: r["images_per_second"] for r in results
            if engine is None or r["engine"] == engine}


def ratio_cell(numerators: list[float], denominators: list[float]) -> str:
    ratios = [n / d for n, d in zip(numerators, denominators)]
    cell = f"{statistics.median(ratios):.2f}"
    if len(ratios) > 1:
        cell += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return cell


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--threads", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--policies", required=True)
    p.add_argument("--models", nargs="+", required=True)
    a = p.parse_args()
    policies = a.policies.split()
    rounds = range(1, a.rounds + 1)
    name = {}

    def series(m: str, side: str, engine: str | None = None) -> dict[int, list[float]]:
        """images/s by batch, one entry per round."""
        by_batch: dict[int, list[float]] = {}
        for r in rounds:
            path = a.out / f"{m}-{side}-r{r}.json"
            if side in policies:
                name[m] = json.loads(path.read_text())["model"]
            for batch, rate in load(path, engine).items():
                by_batch.setdefault(batch, []).append(rate)
        return by_batch

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}"

    spread = " (range over rounds)" if a.rounds > 1 else ""
    print(f"Float vs onnxruntime float, {a.threads} threads each, median of {a.rounds} "
          f"interleaved round(s); ratio > 1: ours faster.\n")
    head = ["model", "batch"] + [f"float img/s ({p})" for p in policies] + ["onnxruntime img/s"]
    head += [f"ratio {p}{spread}" for p in policies]
    if a.rounds > 1:
        head += [f"best / best ({p})" for p in policies]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for m in a.models:
        ours = {p: series(m, p, "float") for p in policies}
        ort = series(m, "ort")
        for b in sorted(ort):
            cells = [name[m], str(b)] + [median(ours[p][b]) for p in policies]
            cells += [median(ort[b])] + [ratio_cell(ours[p][b], ort[b]) for p in policies]
            if a.rounds > 1:
                cells += [f"{max(ours[p][b]) / max(ort[b]):.2f}" for p in policies]
            print("| " + " | ".join(cells) + " |")

    roofline(a, policies, series)

    int8_models = [m for m in a.models if (a.out / f"{m}-ort-int8-r1.json").exists()]
    if not int8_models:
        return
    imported = all((a.out / f"{m}-imported-r1.json").exists() for m in int8_models)
    print(f"\nint8 vs onnxruntime's int8 QDQ model and vs our float engine, same rounds"
          + (f"; last columns: our int8 engine running that QDQ file ({policies[0]} policy)."
             if imported else ".") + "\n")
    head = ["model", "batch"] + [f"int8 img/s ({p})" for p in policies]
    head += ["onnxruntime int8 img/s"] + [f"int8 / ORT int8 ({p})" for p in policies]
    head += [f"int8 / our float ({p})" for p in policies]
    if imported:
        head += ["ours on the QDQ file img/s", "ours / ORT on the QDQ file"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for m in int8_models:
        int8 = {p: series(m, p, "int8") for p in policies}
        floats = {p: series(m, p, "float") for p in policies}
        qdq = series(m, "ort-int8")
        file = series(m, "imported") if imported else {}
        for b in sorted(qdq):
            cells = [name[m], str(b)] + [median(int8[p][b]) for p in policies] + [median(qdq[b])]
            cells += [ratio_cell(int8[p][b], qdq[b]) for p in policies]
            cells += [ratio_cell(int8[p][b], floats[p][b]) for p in policies]
            if imported:
                cells += [median(file[b]), ratio_cell(file[b], qdq[b])]
            print("| " + " | ".join(cells) + " |")


def fma_peak(path: Path) -> float | None:
    """GFLOP/s from a `fma_peak` output line, None when the file is absent."""
    if not path.exists():
        return None
    fields = dict(f.split("=", 1) for f in path.read_text().split()[1:])
    return float(fields["gflops"])


def roofline(a: argparse.Namespace, policies: list[str], series) -> None:
    peaks = [fma_peak(a.out / f"fma-peak-{when}.txt") for when in ("before", "after")]
    rounds = range(1, a.rounds + 1)
    round_peaks = {m: [fma_peak(a.out / f"{m}-fma-peak-r{r}.txt") for r in rounds]
                   for m in a.models}
    if None in peaks or any(None in p for p in round_peaks.values()):
        return
    every = [p for ps in round_peaks.values() for p in ps]
    policy = policies[0]
    print(f"\nFloat throughput against the FMA peak ({a.threads} threads; {peaks[0]:.0f} GFLOP/s "
          f"before the rounds, {peaks[1]:.0f} after, {min(every):.0f}–{max(every):.0f} right "
          f"before each model's rounds, which each share uses). GFLOP counted as direct "
          f"convolution (Winograd does fewer multiplications for the same count).\n")
    head = ["model", "GFLOP/image", "batch", f"float GFLOP/s ({policy})", "% of peak",
            "onnxruntime GFLOP/s", "% of peak", "1.1× onnxruntime needs"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for m in a.models:
        record = json.loads((a.out / f"{m}-{policy}-r1.json").read_text())
        gflop = direct_flops(record["model_path"]) / 1e9
        ours, ort = series(m, policy, "float"), series(m, "ort")
        for b in sorted(ort):
            def share(rates: list[float]) -> float:
                return 100 * statistics.median(
                    rate * gflop / peak for rate, peak in zip(rates, round_peaks[m]))
            mine, theirs = statistics.median(ours[b]) * gflop, statistics.median(ort[b]) * gflop
            cells = [record["model"], f"{gflop:.2f}", str(b), f"{mine:.0f}",
                     f"{share(ours[b]):.0f} %", f"{theirs:.0f}", f"{share(ort[b]):.0f} %",
                     f"{1.1 * share(ort[b]):.0f} %"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
