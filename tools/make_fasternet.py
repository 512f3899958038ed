#!/usr/bin/env python3
"""Generates FasterNet T0/T1/T2/S ONNX models with random weights (numpy only).

The architecture follows the original FasterNet (Chen et al., CVPR 2023): a 4x4/4 patch-embed
conv with BatchNorm; four stages of FasterNet blocks joined by 2x2/2 patch-merging convs with
BatchNorm; each block is a partial 3x3 conv on the first C/4 channels (Split -> Conv ->
Concat) followed by 1x1 conv C->2C, BatchNorm, activation, 1x1 conv 2C->C and a residual add;
the head is global average pool, 1x1 conv to 1280 (no bias), activation, flatten, Linear to
1000. BatchNorms are folded, so the convs they follow get a bias.

Weights are random but realistic in scale: convs drawn with He/LeCun variance, each
BatchNorm's running statistics taken from a numpy forward pass over a few smooth random
calibration images (so activations stay normalised through the depth) and folded, the
classifier centred on the calibration features. Generation depends only on the variant and
seed, never on the opset, so every opset variant computes the same function.

Usage:
  make_fasternet.py --variant t0 --opset 11 --out fasternet-t0.onnx [--seed N]
  make_fasternet.py --variant t0,t1 --opset 11,13,20 --cache-dir DIR [--seed N]
The cache form writes each missing model into DIR under a name that carries the variant,
opset, seed and a digest of the generator's source, and prints one absolute path per line.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_writer import GraphBuilder, ValueInfo, fold_batch_norm  # noqa: E402

IMAGE_SIZE = 224
NUM_CLASSES = 1000
HEAD_FEATURES = 1280
BN_EPS = 1e-5
MLP_RATIO = 2
N_DIV = 4


@dataclass(frozen=True)
class Variant:
    """Embedding width, blocks per stage and activation of one FasterNet size."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    activation: str  # "gelu" or "relu"


VARIANTS: dict[str, Variant] = {
    "t0": Variant(40, (1, 2, 8, 2), "gelu"),
    "t1": Variant(64, (1, 2, 8, 2), "gelu"),
    "t2": Variant(96, (1, 2, 8, 2), "relu"),
    "s": Variant(128, (1, 2, 13, 2), "relu"),
}


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, pad: int = 0) -> np.ndarray:
    """A plain NCHW convolution (group 1) in numpy, used only to calibrate the random weights."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    if kh == kw == stride:
        # Non-overlapping patches (stem, merging, 1x1): a reshape and one matmul.
        n, c, h, wd = x.shape
        oh, ow = h // kh, wd // kw
        patches = x.reshape(n, c, oh, kh, ow, kw).transpose(0, 2, 4, 1, 3, 5).reshape(n * oh * ow, -1)
        # A 2-D product so numpy hands it to BLAS in one call.
        out = (patches @ w.reshape(w.shape[0], -1).T).reshape(n, oh, ow, -1)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
        out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))
    out = out.transpose(0, 3, 1, 2)
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).

    Only the calibration statistics use it; the model itself computes the exact GELU.
    """
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


def calibration_images(count: int, seed: int) -> np.ndarray:
    """Smooth random colour fields scaled like normalised photos (per-pixel mean 0, std 1).

    Upsampled low-resolution noise gives the spatial structure that plain white noise lacks,
    so global average pooling keeps some image-to-image variation.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (count, 3, 7, 7)) + rng.normal(0.0, 0.5, (count, 3, 1, 1))
    fine = rng.normal(0.0, 0.3, (count, 3, IMAGE_SIZE, IMAGE_SIZE))
    images = np.repeat(np.repeat(coarse, IMAGE_SIZE // 7, axis=2), IMAGE_SIZE // 7, axis=3) + fine
    return images.astype(np.float32)


class CalibratedWeights:
    """Draws random weights in a fixed order and sets each BatchNorm's statistics from a numpy
    forward pass over calibration images, as a trained model's running statistics would be.

    ``tensors`` maps PyTorch-like parameter names (BatchNorm already folded) to arrays;
    ``unfolded_parameters`` counts parameters as PyTorch would before folding.
    """

    def __init__(self, variant: Variant, seed: int, calibration_count: int = 8):
        self.variant = variant
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, np.ndarray] = {}
        self.unfolded_parameters = 0
        self._run(calibration_images(calibration_count, seed + 1))

    def _conv_weight(self, out_ch: int, in_ch: int, kernel: int, gain: float) -> np.ndarray:
        """Variance gain/fan_in: gain 2 (He) before an activation, 1 before a linear use."""
        fan_in = in_ch * kernel * kernel
        self.unfolded_parameters += out_ch * fan_in
        return self.rng.normal(0.0, np.sqrt(gain / fan_in), (out_ch, in_ch, kernel, kernel)).astype(np.float32)

    def _conv_bn(self, name: str, x: np.ndarray, out_ch: int, kernel: int, stride: int, gain: float) -> np.ndarray:
        """A bias-free conv and its BatchNorm with the calibration batch's statistics, folded."""
        weight = self._conv_weight(out_ch, x.shape[1], kernel, gain)
        y = conv2d(x, weight, None, stride)
        self.unfolded_parameters += 2 * out_ch
        gamma = self.rng.uniform(0.8, 1.2, out_ch)
        beta = self.rng.normal(0.0, 0.1, out_ch)
        mean, var = y.mean(axis=(0, 2, 3)), y.var(axis=(0, 2, 3))
        w, b = fold_batch_norm(weight, None, gamma, beta, mean, var, BN_EPS)
        self.tensors[f"{name}.weight"], self.tensors[f"{name}.bias"] = w, b
        scale = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
        return y * scale.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)

    def _conv(self, name: str, x: np.ndarray, out_ch: int, kernel: int, gain: float, scale: float = 1.0) -> np.ndarray:
        weight = self._conv_weight(out_ch, x.shape[1], kernel, gain) * np.float32(scale)
        self.tensors[f"{name}.weight"] = weight
        return conv2d(x, weight, None, 1, pad=kernel // 2)

    def _activation(self, x: np.ndarray) -> np.ndarray:
        return gelu(x) if self.variant.activation == "gelu" else np.maximum(x, 0.0)

    def _block(self, name: str, x: np.ndarray, residual_scale: float) -> np.ndarray:
        dim = x.shape[1]
        part = dim // N_DIV
        first = self._conv(f"{name}.spatial_mixing.partial_conv3", x[:, :part], part, 3, gain=1.0)
        mixed = np.concatenate([first, x[:, part:]], axis=1)
        h = self._activation(self._conv_bn(f"{name}.mlp.0", mixed, dim * MLP_RATIO, 1, 1, gain=2.0))
        # The residual branch is damped so deep stages do not blow the activations up.
        h = self._conv(f"{name}.mlp.3", h, dim, 1, gain=1.0, scale=residual_scale)
        return x + h

    def _run(self, images: np.ndarray) -> None:
        v = self.variant
        x = self._conv_bn("patch_embed.proj", images, v.embed_dim, 4, 4, gain=1.0)
        for stage, depth in enumerate(v.depths):
            if stage > 0:
                x = self._conv_bn(f"stages.{2 * stage - 1}.reduction", x, 2 * x.shape[1], 2, 2, gain=1.0)
            for index in range(depth):
                x = self._block(f"stages.{2 * stage}.blocks.{index}", x, 1.0 / np.sqrt(depth))
        pooled = x.mean(axis=(2, 3), keepdims=True)
        features = self._activation(self._conv("avgpool_pre_head.1", pooled, HEAD_FEATURES, 1, gain=2.0))
        features = features.reshape(features.shape[0], -1)
        self.unfolded_parameters += NUM_CLASSES * HEAD_FEATURES + NUM_CLASSES
        weight = self.rng.normal(0.0, 1.0, (NUM_CLASSES, HEAD_FEATURES))
        # Centre and scale the classifier on the calibration features, as training would: the
        # image-independent part of the features must not decide the class, and the logits
        # should spread over a few units like a trained classifier's.
        centred = features - features.mean(axis=0)
        spread = float((centred @ weight.T).std()) or 1.0
        weight *= 3.0 / spread
        bias = -(features.mean(axis=0) @ weight.T) + self.rng.normal(0.0, 0.1, NUM_CLASSES)
        self.tensors["head.weight"] = weight.astype(np.float32)
        self.tensors["head.bias"] = bias.astype(np.float32)


class FasterNetBuilder:
    """Emits the graph for one opset from calibrated weights, with PyTorch-like node names."""

    def __init__(self, variant: Variant, weights: CalibratedWeights, opset: int):
        self.variant = variant
        self.weights = weights.tensors
        self.graph = GraphBuilder("fasternet", opset)

    def activation(self, x: str, name: str) -> str:
        if self.variant.activation == "gelu":
            return self.graph.gelu(x, name)
        return self.graph.op("Relu", [x], name)

    def conv(self, x: str, name: str, stride: int = 1, pad: int = 0) -> str:
        return self.graph.conv(
            x, self.weights[f"{name}.weight"], self.weights.get(f"{name}.bias"), name, stride=stride,
            pads=(pad, pad, pad, pad),
        )

    def block(self, x: str, dim: int, name: str) -> str:
        g = self.graph
        part = dim // N_DIV
        first, rest = g.split(x, [part, dim - part], axis=1, name=f"{name}.spatial_mixing.split")
        first = self.conv(first, f"{name}.spatial_mixing.partial_conv3", pad=1)
        mixed = g.op("Concat", [first, rest], f"{name}.spatial_mixing.concat", axis=1)
        h = self.activation(self.conv(mixed, f"{name}.mlp.0"), f"{name}.mlp.2")
        h = self.conv(h, f"{name}.mlp.3")
        return g.op("Add", [x, h], f"{name}.add")

    def build(self) -> GraphBuilder:
        g, v = self.graph, self.variant
        g.inputs.append(ValueInfo("input", ["N", 3, IMAGE_SIZE, IMAGE_SIZE]))
        x = self.conv("input", "patch_embed.proj", stride=4)
        dim = v.embed_dim
        for stage, depth in enumerate(v.depths):
            if stage > 0:
                x = self.conv(x, f"stages.{2 * stage - 1}.reduction", stride=2)
                dim *= 2
            for index in range(depth):
                x = self.block(x, dim, f"stages.{2 * stage}.blocks.{index}")
        x = g.op("GlobalAveragePool", [x], "avgpool_pre_head.0")
        x = self.activation(self.conv(x, "avgpool_pre_head.1"), "avgpool_pre_head.2")
        x = g.op("Flatten", [x], "flatten", axis=1)
        w = g.constant("head.weight", self.weights["head.weight"])
        b = g.constant("head.bias", self.weights["head.bias"])
        g.op("Gemm", [x, w, b], "head", out_name="logits", transB=1)
        g.outputs.append(ValueInfo("logits", ["N", NUM_CLASSES]))
        return g


@functools.lru_cache(maxsize=4)
def calibrated_weights(variant: str, seed: int) -> CalibratedWeights:
    """The weights of one variant and seed, shared by all its opset variants in a process."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown FasterNet variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return CalibratedWeights(VARIANTS[variant], seed)


def build_fasternet(variant: str, opset: int, seed: int = 0) -> tuple[GraphBuilder, int]:
    """Returns the graph and the parameter count of the un-folded (PyTorch) model."""
    if opset < 11:
        raise ValueError(f"opset {opset} is below 11, the oldest this generator writes")
    weights = calibrated_weights(variant, seed)
    return FasterNetBuilder(VARIANTS[variant], weights, opset).build(), weights.unfolded_parameters


def source_digest() -> str:
    """A short digest of the generator's sources, so cached models go stale when code changes."""
    tools = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("make_fasternet.py", "onnx_writer.py"):
        digest.update((tools / name).read_bytes())
    return digest.hexdigest()[:10]


def write_model(variant: str, opset: int, seed: int, out: Path) -> tuple[int, int]:
    """Writes one model; returns (un-folded, folded) parameter counts."""
    graph, unfolded = build_fasternet(variant, opset, seed)
    graph.save(out, producer="imagenet-eval tools/make_fasternet.py",
               doc=f"FasterNet-{variant.upper()} with random weights (seed {seed}), BatchNorm folded")
    return unfolded, graph.parameter_count()


def cached_model(variant: str, opset: int, seed: int, cache_dir: Path) -> Path:
    """Returns the model's path in ``cache_dir``, generating it only when it is missing."""
    path = cache_dir.resolve() / f"fasternet-{variant}-opset{opset}-seed{seed}-{source_digest()}.onnx"
    if not path.exists():
        write_model(variant, opset, seed, path)
    return path


def _list(text: str, convert=str) -> list:
    return [convert(item) for item in text.split(",") if item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="t0, t1, t2 or s (comma list with --cache-dir)")
    parser.add_argument("--opset", required=True, help="e.g. 11, 13, 20 (comma list with --cache-dir)")
    parser.add_argument("--seed", type=int, default=0)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write one model here")
    target.add_argument("--cache-dir", type=Path, help="generate missing models here, print their paths")
    args = parser.parse_args()
    variants, opsets = _list(args.variant), _list(args.opset, int)
    try:
        if args.out is not None:
            if len(variants) != 1 or len(opsets) != 1:
                parser.error("--out takes a single --variant and --opset")
            unfolded, folded = write_model(variants[0], opsets[0], args.seed, args.out)
            print(f"wrote {args.out}: {unfolded:,} parameters ({unfolded / 1e6:.1f} M), "
                  f"{folded:,} after folding BatchNorm")
        else:
            for variant in variants:
                for opset in opsets:
                    print(cached_model(variant, opset, args.seed, args.cache_dir))
    except ValueError as error:
        parser.exit(2, f"make_fasternet.py: error: {error}\n")


if __name__ == "__main__":
    main()
