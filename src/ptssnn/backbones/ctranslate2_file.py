"""Reader for CTranslate2 ``model.bin`` files (binary format version 6), written from the spec.

The file is: a header (format version, spec name, spec revision, variable count), then each
variable (name, rank, dimensions, dtype code, byte count, raw row-major bytes), then aliases.
A model may be split into several parts that concatenate to one ``model.bin`` (the
``whisper-base`` packages are), so the reader takes a list of parts and streams across them
without ever concatenating them in memory; variables not asked for are skipped with a seek.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptssnn.errors import BackboneUnavailableError

# dtype codes of the CTranslate2 binary format.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    # bfloat16 has no numpy dtype: kept as raw uint16 and widened in `_to_float32`.
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5
SUPPORTED_VERSIONS = (5, 6)


class _ConcatenatedReader(io.RawIOBase):
    """Read-only, seek-forward stream over several files that form one logical file."""

    def __init__(self, parts: Sequence[Path]) -> None:
        super().__init__()
        self._parts = [Path(p) for p in parts]
        self._sizes = [p.stat().st_size for p in self._parts]
        self._index = 0
        self._handle = self._parts[0].open("rb")
        self._offset_in_part = 0
        self.total_size = sum(self._sizes)

    def readable(self) -> bool:
        return True

    def _advance(self) -> bool:
        self._handle.close()
        self._index += 1
        if self._index >= len(self._parts):
            return False
        self._handle = self._parts[self._index].open("rb")
        self._offset_in_part = 0
        return True

    def read_exact(self, count: int) -> bytes:
        chunks: list[bytes] = []
        remaining = count
        while remaining > 0:
            chunk = self._handle.read(remaining)
            if chunk:
                chunks.append(chunk)
                remaining -= len(chunk)
                self._offset_in_part += len(chunk)
            elif not self._advance():
                raise EOFError(f"unexpected end of model file after {count - remaining} bytes")
        return b"".join(chunks)

    def skip(self, count: int) -> None:
        remaining = count
        while remaining > 0:
            left_in_part = self._sizes[self._index] - self._offset_in_part
            step = min(left_in_part, remaining)
            self._handle.seek(step, io.SEEK_CUR)
            self._offset_in_part += step
            remaining -= step
            if remaining > 0 and not self._advance():
                raise EOFError("unexpected end of model file while skipping a variable")

    def close(self) -> None:
        self._handle.close()
        super().close()


@dataclass
class CTranslate2Model:
    """Variables read from a CTranslate2 model file.

    Attributes:
        spec_name: The model spec, e.g. ``"WhisperSpec"``.
        spec_revision: The spec's revision number.
        version: Binary format version.
        variables: Name → array (dtype as stored; bfloat16 widened to float32).
        aliases: Alias name → target variable name.
        digest: SHA-256 (hex) over the names, shapes, dtypes and bytes of the variables that
            were read, i.e. a hash of exactly the weights used.
    """

    spec_name: str
    spec_revision: int
    version: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    digest: str = ""

    def get(self, name: str) -> np.ndarray:
        """Return a variable by name or alias.

        Raises:
            BackboneUnavailableError: The model file has no such variable.
        """
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise BackboneUnavailableError(
                f"the CTranslate2 model has no variable {name!r}; the file is not the expected "
                f"{self.spec_name} model or is damaged: reinstall its package"
            )
        return self.variables[name]


def read_ctranslate2_model(
    parts: Path | str | Sequence[Path | str],
    *,
    include: Callable[[str], bool] | None = None,
) -> CTranslate2Model:
    """Parse a CTranslate2 ``model.bin`` (optionally split in parts, concatenated in order).

    Args:
        parts: The file, or its parts in order.
        include: Predicate on variable names; variables it rejects are skipped (not read).
            ``None`` reads everything.

    Returns:
        The parsed model.

    Raises:
        BackboneUnavailableError: A part is missing, the file is truncated or the format
            version is not supported.
    """
    paths = [Path(parts)] if isinstance(parts, str | Path) else [Path(p) for p in parts]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BackboneUnavailableError(f"CTranslate2 model file(s) not found: {', '.join(missing)}")
    reader = _ConcatenatedReader(paths)
    digest = hashlib.sha256()
    try:
        return _parse(reader, include, digest)
    except (EOFError, struct.error, UnicodeDecodeError, ValueError) as error:
        raise BackboneUnavailableError(
            f"cannot parse CTranslate2 model {', '.join(map(str, paths))} ({error}); the file is "
            "truncated or damaged: reinstall the package that provides it"
        ) from error
    finally:
        reader.close()


def _parse(
    reader: _ConcatenatedReader,
    include: Callable[[str], bool] | None,
    digest: hashlib._Hash,
) -> CTranslate2Model:
    def u8() -> int:
        return reader.read_exact(1)[0]

    def u16() -> int:
        return struct.unpack("<H", reader.read_exact(2))[0]

    def u32() -> int:
        return struct.unpack("<I", reader.read_exact(4))[0]

    def string() -> str:
        # Byte count includes the trailing NUL.
        return reader.read_exact(u16())[:-1].decode("utf-8")

    version = u32()
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"binary format version {version} is not supported")
    model = CTranslate2Model(spec_name=string(), spec_revision=u32(), version=version)
    for _ in range(u32()):
        name = string()
        rank = u8()
        shape = struct.unpack(f"<{rank}I", reader.read_exact(4 * rank)) if rank else ()
        code = u8()
        if code not in _DTYPES:
            raise ValueError(f"variable {name!r} has unknown dtype code {code}")
        num_bytes = u32()
        if include is not None and not include(name):
            reader.skip(num_bytes)
            continue
        raw = reader.read_exact(num_bytes)
        digest.update(f"{name}|{shape}|{code}|".encode())
        digest.update(raw)
        array = np.frombuffer(raw, dtype=_DTYPES[code]).reshape(shape)
        if code == _BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        model.variables[name] = array
    # Aliases may be absent in truncated-but-valid older files; read them when present.
    try:
        count = u32()
    except EOFError:
        count = 0
    for _ in range(count):
        alias = string()
        model.aliases[alias] = string()
    model.digest = digest.hexdigest()
    return model
