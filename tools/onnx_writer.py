"""A minimal ONNX protobuf encoder (numpy only) and a small graph builder.

Only the message fields the converters need are encoded: ModelProto, GraphProto, NodeProto,
AttributeProto (int, float, string, ints, floats, tensor), TensorProto (raw_data) and
ValueInfoProto with tensor types. Field numbers follow onnx.proto (proto2); repeated scalars
are written unpacked, as proto2 does by default.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

# TensorProto.DataType values.
ONNX_DTYPES: dict[np.dtype, int] = {
    np.dtype("float32"): 1,
    np.dtype("uint8"): 2,
    np.dtype("int8"): 3,
    np.dtype("int32"): 6,
    np.dtype("int64"): 7,
}

# The oldest IR version that each opset range requires (onnx/helper.py VERSION_TABLE).
_IR_VERSION_FOR_OPSET: list[tuple[int, int]] = [
    (9, 4), (10, 5), (11, 6), (14, 7), (18, 8), (20, 9), (22, 10), (23, 11), (24, 12), (27, 13),
    (28, 14),
]

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_FLOATS, _ATTR_INTS = 1, 2, 3, 4, 6, 7

AttributeValue = Union[int, float, str, bytes, Sequence[int], Sequence[float], np.ndarray]


def ir_version_for_opset(opset: int) -> int:
    """Returns the IR version that ships with the given default-domain opset."""
    for max_opset, ir in _IR_VERSION_FOR_OPSET:
        if opset <= max_opset:
            return ir
    raise ValueError(f"opset {opset} is newer than this writer knows")


# --- protobuf wire format -------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field_number: int, wire_type: int) -> bytes:
    return _varint((field_number << 3) | wire_type)


def _int_field(field_number: int, value: int) -> bytes:
    return _key(field_number, _WIRE_VARINT) + _varint(int(value))


def _bytes_field(field_number: int, payload: bytes) -> bytes:
    return _key(field_number, _WIRE_BYTES) + _varint(len(payload)) + payload


def _string_field(field_number: int, text: str) -> bytes:
    return _bytes_field(field_number, text.encode("utf-8"))


def _float_field(field_number: int, value: float) -> bytes:
    return _key(field_number, _WIRE_FIXED32) + struct.pack("<f", value)


# --- ONNX messages --------------------------------------------------------------------------


def encode_tensor(name: str, array: np.ndarray) -> bytes:
    """Encodes a TensorProto with little-endian raw_data."""
    dtype = np.dtype(array.dtype)
    if dtype not in ONNX_DTYPES:
        raise TypeError(f"tensor {name}: unsupported dtype {dtype}")
    out = b"".join(_int_field(1, d) for d in array.shape)
    out += _int_field(2, ONNX_DTYPES[dtype])
    out += _string_field(8, name)
    out += _bytes_field(9, np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes())
    return out


def _encode_attribute(name: str, value: AttributeValue) -> bytes:
    out = _string_field(1, name)
    if isinstance(value, np.ndarray):
        return out + _bytes_field(5, encode_tensor("", value)) + _int_field(20, _ATTR_TENSOR)
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return out + _int_field(3, int(value)) + _int_field(20, _ATTR_INT)
    if isinstance(value, (float, np.floating)):
        return out + _float_field(2, float(value)) + _int_field(20, _ATTR_FLOAT)
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return out + _bytes_field(4, value) + _int_field(20, _ATTR_STRING)
    items = list(value)
    if items and all(isinstance(v, (float, np.floating)) for v in items):
        return out + b"".join(_float_field(7, float(v)) for v in items) + _int_field(20, _ATTR_FLOATS)
    if all(isinstance(v, (int, np.integer)) for v in items):
        return out + b"".join(_int_field(8, int(v)) for v in items) + _int_field(20, _ATTR_INTS)
    raise TypeError(f"attribute {name}: unsupported value {value!r}")


def _encode_value_info(name: str, elem_type: int, shape: Sequence[Union[int, str]]) -> bytes:
    dims = b""
    for d in shape:
        dim = _string_field(2, d) if isinstance(d, str) else _int_field(1, d)
        dims += _bytes_field(1, dim)
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, dims)
    type_proto = _bytes_field(1, tensor_type)
    return _string_field(1, name) + _bytes_field(2, type_proto)


@dataclass
class Node:
    """One ONNX node; attributes keep insertion order so the output is deterministic."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    name: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = b"".join(_string_field(1, i) for i in self.inputs)
        out += b"".join(_string_field(2, o) for o in self.outputs)
        out += _string_field(3, self.name) + _string_field(4, self.op_type)
        out += b"".join(_bytes_field(5, _encode_attribute(k, v)) for k, v in self.attributes.items())
        return out


@dataclass
class ValueInfo:
    """A graph input or output: name, element type and shape (str entries are symbolic)."""

    name: str
    shape: Sequence[Union[int, str]]
    dtype: np.dtype = np.dtype("float32")

    def encode(self) -> bytes:
        return _encode_value_info(self.name, ONNX_DTYPES[np.dtype(self.dtype)], self.shape)


# --- graph builder --------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers and hands out unique, readable tensor names."""

    def __init__(self, name: str, opset: int):
        self.name = name
        self.opset = opset
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.inputs: list[ValueInfo] = []
        self.outputs: list[ValueInfo] = []
        self._counts: dict[str, int] = {}

    def _unique(self, base: str) -> str:
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def constant(self, name: str, array: np.ndarray) -> str:
        """Adds an initializer and returns its (unique) name."""
        unique = self._unique(name)
        # np.array keeps 0-d scalars 0-d (ascontiguousarray would make them shape [1]).
        self.initializers[unique] = np.array(array, order="C")
        return unique

    def op(
        self,
        op_type: str,
        inputs: Iterable[str],
        name: str,
        outputs: int = 1,
        out_name: str | None = None,
        **attributes,
    ) -> Union[str, list[str]]:
        """Adds a node named ``name`` and returns its output name (or names if outputs > 1).

        The single output is called ``out_name`` when given (graph outputs need fixed names),
        else after the node.
        """
        node_name = self._unique(name)
        if outputs == 1:
            out_names = [out_name or node_name]
        else:
            out_names = [f"{node_name}_out{i}" for i in range(outputs)]
        self.nodes.append(Node(op_type, list(inputs), out_names, node_name, attributes))
        return out_names[0] if outputs == 1 else out_names

    def conv(
        self,
        x: str,
        weight: np.ndarray,
        bias: np.ndarray | None,
        name: str,
        stride: int = 1,
        pads: Sequence[int] = (0, 0, 0, 0),
        group: int = 1,
    ) -> str:
        """Adds a 2-D Conv; ``pads`` is ONNX's [top, left, bottom, right]."""
        inputs = [x, self.constant(f"{name}.weight", weight.astype(np.float32))]
        if bias is not None:
            inputs.append(self.constant(f"{name}.bias", bias.astype(np.float32)))
        kernel = list(weight.shape[2:])
        return self.op(
            "Conv", inputs, name,
            dilations=[1, 1], group=group, kernel_shape=kernel, pads=list(pads),
            strides=[stride, stride],
        )

    def relu6(self, x: str, name: str) -> str:
        """Clip(0, 6), with bounds as attributes before opset 11 and as inputs from 11 on."""
        if self.opset < 11:
            return self.op("Clip", [x], name, min=0.0, max=6.0)
        lo = self.constant(f"{name}.min", np.array(0.0, dtype=np.float32))
        hi = self.constant(f"{name}.max", np.array(6.0, dtype=np.float32))
        return self.op("Clip", [x, lo, hi], name)

    def gelu(self, x: str, name: str) -> str:
        """Exact GELU: the Gelu op from opset 20, else torch's exported erf pattern."""
        if self.opset >= 20:
            return self.op("Gelu", [x], name)
        sqrt2 = self.constant(f"{name}.sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
        one = self.constant(f"{name}.one", np.array(1.0, dtype=np.float32))
        half = self.constant(f"{name}.half", np.array(0.5, dtype=np.float32))
        scaled = self.op("Div", [x, sqrt2], f"{name}.div")
        erf = self.op("Erf", [scaled], f"{name}.erf")
        shifted = self.op("Add", [erf, one], f"{name}.add")
        product = self.op("Mul", [x, shifted], f"{name}.mul")
        return self.op("Mul", [product, half], f"{name}.mul_half")

    def split(self, x: str, sizes: Sequence[int], axis: int, name: str) -> list[str]:
        """Split with sizes as the ``split`` attribute (opset < 13) or as an input (13+)."""
        if self.opset < 13:
            return self.op("Split", [x], name, outputs=len(sizes), axis=axis, split=list(sizes))
        sizes_name = self.constant(f"{name}.split", np.array(sizes, dtype=np.int64))
        return self.op("Split", [x, sizes_name], name, outputs=len(sizes), axis=axis)

    def parameter_count(self) -> int:
        """Counts float initializer elements (weights and biases, not scalar op constants)."""
        return sum(a.size for a in self.initializers.values() if a.ndim > 0 and a.dtype == np.float32)

    def encode_model(self, producer: str, doc: str = "") -> bytes:
        """Serializes the graph as a ModelProto."""
        graph = b"".join(_bytes_field(1, n.encode()) for n in self.nodes)
        graph += _string_field(2, self.name)
        graph += b"".join(_bytes_field(5, encode_tensor(k, v)) for k, v in self.initializers.items())
        if doc:
            graph += _string_field(10, doc)
        graph += b"".join(_bytes_field(11, v.encode()) for v in self.inputs)
        graph += b"".join(_bytes_field(12, v.encode()) for v in self.outputs)
        opset = _string_field(1, "") + _int_field(2, self.opset)
        model = _int_field(1, ir_version_for_opset(self.opset))
        model += _string_field(2, producer) + _string_field(3, "1")
        model += _bytes_field(7, graph) + _bytes_field(8, opset)
        return model

    def save(self, path: Path, producer: str, doc: str = "") -> None:
        """Writes the model atomically so a concurrent reader never sees a partial file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{np.random.default_rng().integers(1 << 30)}")
        tmp.write_bytes(self.encode_model(producer, doc))
        tmp.replace(path)


def fold_batch_norm(
    weight: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Folds an inference-mode BatchNorm that follows a conv into the conv's weight and bias.

    Computed in float64 and rounded once so the folded model is as close as float32 allows.
    """
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    folded_w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b = np.zeros_like(scale) if bias is None else bias.astype(np.float64)
    folded_b = (b - mean.astype(np.float64)) * scale + beta.astype(np.float64)
    return folded_w.astype(np.float32), folded_b.astype(np.float32)
