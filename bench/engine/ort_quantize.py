#!/usr/bin/env python3
"""Quantize a float ONNX model the way onnxruntime users do, for the int8 rows of bench/engine.

Usage: ort_quantize.py MODEL.onnx CALIB_DIR OUT.onnx

CALIB_DIR holds the calibration images as float32 .npy tensors [1, 3, H, W] (or [3, H, W]),
written by `imagenet-eval inspect --dump N --dump-dir CALIB_DIR` with the model's preset, i.e.
exactly the tensors the int8 engine of imagenet-eval calibrates on. The model is quantized with
`onnxruntime.quantization.quantize_static`: QDQ format, s8 weights per output channel, s8
activations, min/max calibration. Prints the output path.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)


class Reader(CalibrationDataReader):
    def __init__(self, name, files):
        self.name = name
        self.files = iter(files)

    def get_next(self):
        path = next(self.files, None)
        if path is None:
            return None
        x = np.load(path).astype(np.float32)
        return {self.name: x if x.ndim == 4 else x[None]}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, calib, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    files = sorted(calib.glob("*.npy"))
    if not files:
        sys.exit(f"{calib}: no .npy calibration tensors")
    name = onnx.load(model, load_external_data=False).graph.input[0].name
    quantize_static(
        model, out, Reader(name, files), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax)
    print(out)


if __name__ == "__main__":
    main()
