"""Reads PyTorch's legacy (pre-1.6, non-zip) ``torch.save`` format with numpy only.

The legacy file is a sequence of pickles: a magic number, the protocol version, system
information, the object itself (tensors refer to storages by persistent id), then the list of
storage keys in the order their raw data follows. Each storage's data is preceded by its
element count as a little-endian int64.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype; every legacy storage is little-endian on disk.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class LegacyFormatError(ValueError):
    """The file is not a legacy torch serialization this reader understands."""


@dataclass
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    """A storage known by key until its data is read after the main pickle."""

    key: str
    dtype: np.dtype
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self, path: Path) -> np.ndarray:
        """Returns a contiguous copy of the tensor's view into its storage."""
        data = self.storage.data
        if data is None:
            raise LegacyFormatError(f"{path}: storage {self.storage.key} has no data")
        if not self.shape:
            return data[self.offset].copy()
        itemsize = data.itemsize
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1
        if any(n == 0 for n in self.shape):
            return np.zeros(self.shape, dtype=data.dtype)
        if needed > data.size:
            raise LegacyFormatError(
                f"{path}: tensor of shape {self.shape} overruns storage {self.storage.key}"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, *rest):
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    """Resolves only the torch names a state dict needs; anything else is refused."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError(f"storage views are not supported (key {key})")
        if key not in self._storages:
            self._storages[key] = _Storage(key, storage_type.dtype)
        return self._storages[key]


def _read_storage_data(file: BinaryIO, storage: _Storage, path: Path) -> None:
    header = file.read(8)
    if len(header) != 8:
        raise LegacyFormatError(f"{path}: truncated before storage {storage.key}")
    count = int(np.frombuffer(header, dtype="<i8")[0])
    nbytes = count * storage.dtype.itemsize
    raw = file.read(nbytes)
    if len(raw) != nbytes:
        raise LegacyFormatError(f"{path}: storage {storage.key} truncated ({len(raw)}/{nbytes} bytes)")
    storage.data = np.frombuffer(raw, dtype=storage.dtype)


def _materialize(obj: Any, path: Path) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.materialize(path)
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v, path)) for k, v in obj.items())
    return obj


def load_legacy_state_dict(
    source: Path | BinaryIO, name: str | None = None
) -> "collections.OrderedDict[str, np.ndarray]":
    """Loads a legacy ``torch.save`` file and returns its object with tensors as numpy arrays.

    ``source`` is a path or a seekable binary file; ``name`` labels errors for the latter.
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as file:
            return _load(file, Path(source))
    return _load(source, Path(name or "<stream>"))


def _load(file: BinaryIO, path: Path) -> "collections.OrderedDict[str, np.ndarray]":
    start = file.tell()
    if file.read(2) == b"PK":
        raise LegacyFormatError(f"{path}: zip-format torch file; only the legacy format is read")
    file.seek(start)
    storages: dict[str, _Storage] = {}

    def header_pickle() -> Any:
        # The same restricted unpickler everywhere: a checkpoint must never run code.
        try:
            return _Unpickler(file, storages).load()
        except (pickle.UnpicklingError, EOFError) as error:
            raise LegacyFormatError(f"{path}: not a legacy torch file ({error})") from error

    if header_pickle() != MAGIC_NUMBER:
        raise LegacyFormatError(f"{path}: bad magic number")
    if header_pickle() != PROTOCOL_VERSION:
        raise LegacyFormatError(f"{path}: unsupported protocol version")
    sys_info = header_pickle()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise LegacyFormatError(f"{path}: not written on a little-endian machine")
    result = header_pickle()
    for key in header_pickle():
        if str(key) not in storages:
            raise LegacyFormatError(f"{path}: storage {key} listed but never referenced")
        _read_storage_data(file, storages[str(key)], path)
    return _materialize(result, path)
