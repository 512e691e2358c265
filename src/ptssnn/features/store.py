"""The on-disk feature cache: one memory-mappable ``.npy`` per utterance, keyed by content.

Layout under the cache root::

    <root>/<backbone>-<key>/namespace.json       what the key is made of (human-readable)
    <root>/<backbone>-<key>/entries/ab/<hash>.npy   [L_sel, T, D] float16
    <root>/<backbone>-<key>/entries/ab/<hash>.json  shape, dtype, byte count, CRC-32, ...
    <root>/<backbone>-<key>/locks/ab.lock           inter-process locks (256 stripes)

``<key>`` hashes the backbone identity (name, weight hash, padding, front end), the layer
selection, the audio decoding policy and the storage dtype; ``<hash>`` is the SHA-256 of the
audio file's bytes. Change any of them and the lookup misses: stale features are impossible.

Writes go to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX); the
sidecar JSON is written after the array, and an entry counts only when both exist and agree
(byte count always, CRC-32 when asked), so a crash or a truncated file is seen and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt locks instead
    fcntl = None  # type: ignore[assignment]

from ptssnn.errors import PtssnnError
from ptssnn.jsonio import dumps as strict_json

FORMAT_VERSION = 1
CACHE_ENV = "PTSSNN_CACHE"
DTYPES = ("float16", "float32")
Verify = Literal["size", "checksum"]
_CHUNK = 1 << 22
_TMP_PREFIX = ".tmp-"


class FeatureCacheError(PtssnnError):
    """A cache folder that cannot be used, or an entry that is damaged on disk."""


def default_cache_dir() -> Path:
    """``$PTSSNN_CACHE`` if set, else ``~/.cache/ptssnn/features``."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache/ptssnn/features"


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes: the audio part of the cache key."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_crc32(path: str | Path) -> int:
    """CRC-32 of a file's bytes."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f"{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _not_writable(namespace: Path, error: OSError) -> FeatureCacheError:
    """The one-line error for a cache that lacks an entry and cannot take a new one."""
    return FeatureCacheError(
        f"the feature cache {namespace} cannot be written ({error.strerror or error}) and an "
        f"entry is missing; extract into a writable folder with --cache or ${CACHE_ENV}"
    )


class EntryLock:
    """An exclusive inter-process lock on a lock file.

    On POSIX it is a bare ``fcntl.flock`` (what ``filelock`` uses too, without its ~0.5 ms of
    Python bookkeeping per acquire, which mattered for the fast fbank backbone); elsewhere it
    delegates to ``filelock.FileLock``. The kernel drops the lock when the holder dies, so a
    killed extraction never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._fallback = FileLock(path) if fcntl is None else None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return ``False`` at once if it is held."""
        if self._fallback is not None:
            try:
                self._fallback.acquire(timeout=-1 if blocking else 0)
            except Timeout:
                return False
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise _not_writable(self.path.parent.parent, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fallback is not None:
            self._fallback.release()
        elif self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> EntryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class Entry:
    """A valid cached array.

    Attributes:
        path: The ``.npy`` file.
        shape: ``(L_sel, T, D)``.
        seconds: Duration of the audio it was computed from.
        num_bytes: Size of the ``.npy`` file.
    """

    path: Path
    shape: tuple[int, int, int]
    seconds: float
    num_bytes: int

    @property
    def num_frames(self) -> int:
        return self.shape[1]


class Namespace:
    """All entries sharing one key (backbone identity + layers + audio policy + dtype)."""

    def __init__(self, root: Path, description: dict[str, Any]) -> None:
        self.description = description
        self.key = hashlib.sha256(_canonical_json(description).encode()).hexdigest()[:20]
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(description["backbone"].get("name", "x")))
        self.path = root / f"{label[-40:]}-{self.key}"
        self.dtype = np.dtype(description["dtype"])
        self._made: set[Path] = set()  # entry folders known to exist (saves a mkdir per write)
        self._entries = str(self.path / "entries")
        self._locks: dict[str, EntryLock] = {}

    def ensure(self) -> None:
        """Create the folder and its ``namespace.json`` (first writer wins; same content)."""
        try:
            (self.path / "entries").mkdir(parents=True, exist_ok=True)
            (self.path / "locks").mkdir(exist_ok=True)
            info = self.path / "namespace.json"
            if not info.exists():
                text = strict_json({**self.description, "key": self.key}, indent=2, default=str)
                _atomic_write_bytes(info, text.encode())
        except OSError as error:
            raise FeatureCacheError(
                f"cannot write to the feature cache {self.path.parent} ({error}); choose a "
                f"writable folder with --cache or ${CACHE_ENV}"
            ) from error

    def files(self, audio_hash: str) -> tuple[Path, Path]:
        """``(array .npy, sidecar .json)`` paths of an entry."""
        stem = f"{self._entries}/{audio_hash[:2]}/{audio_hash}"
        return Path(f"{stem}.npy"), Path(f"{stem}.json")

    def lock(self, audio_hash: str) -> EntryLock:
        """The lock guarding this entry (one of 256 stripes, so lock files stay few)."""
        stripe = audio_hash[:2]
        lock = self._locks.get(stripe)
        if lock is None:
            lock = self._locks[stripe] = EntryLock(self.path / "locks" / f"{stripe}.lock")
        return lock

    def read(self, audio_hash: str, verify: Verify = "checksum") -> Entry | None:
        """The entry if it exists and is intact, else ``None`` (missing, truncated, corrupt).

        Args:
            audio_hash: SHA-256 of the audio file.
            verify: ``"size"`` compares the byte count; ``"checksum"`` also the CRC-32.
        """
        array_path, meta_path = self.files(audio_hash)
        try:
            meta = json.loads(meta_path.read_text())
            size = array_path.stat().st_size
            if size != meta["bytes"]:
                return None
            if verify == "checksum" and file_crc32(array_path) != meta["crc32"]:
                return None
            return Entry(array_path, tuple(meta["shape"]), float(meta["seconds"]), size)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, audio_hash: str, array: np.ndarray, *, seconds: float, utt_id: str) -> Entry:
        """Store ``array`` ``[L_sel, T, D]`` (cast to the namespace dtype) atomically.

        Raises:
            FeatureCacheError: The values overflow the storage dtype.
        """
        with np.errstate(over="ignore"):  # overflow is reported below, with the fix
            stored = np.ascontiguousarray(array, dtype=self.dtype)
        if not np.isfinite(stored).all():
            raise FeatureCacheError(
                f"features of {utt_id} are not finite in {self.dtype} (overflow?); extract "
                "with --dtype float32"
            )
        buffer = io.BytesIO()
        np.save(buffer, stored, allow_pickle=False)
        data = buffer.getvalue()
        array_path, meta_path = self.files(audio_hash)
        meta = {
            "shape": list(stored.shape),
            "dtype": str(stored.dtype),
            "bytes": len(data),
            "crc32": zlib.crc32(data),
            "seconds": seconds,
            "first_id": utt_id,
        }
        try:
            if array_path.parent not in self._made:
                array_path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(array_path.parent)
            _atomic_write_bytes(array_path, data)
            _atomic_write_bytes(meta_path, strict_json(meta).encode())
        except OSError as error:
            raise _not_writable(self.path, error) from error
        return Entry(array_path, tuple(stored.shape), seconds, len(data))

    def try_lock(self, audio_hash: str) -> EntryLock | None:
        """The entry's lock, acquired, if it can be taken now; else ``None`` (another process
        holds it)."""
        lock = self.lock(audio_hash)
        return lock if lock.acquire(blocking=False) else None

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by processes on this host that no longer run."""
        removed = 0
        host = socket.gethostname()
        pattern = re.compile(rf"^{re.escape(_TMP_PREFIX)}{re.escape(host)}-(\d+)-[0-9a-f]+$")
        for tmp in (self.path / "entries").glob(f"*/{_TMP_PREFIX}*"):
            match = pattern.match(tmp.name)
            if match and not _process_alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FeatureStore:
    """A feature cache folder.

    Args:
        cache_dir: The root; default ``$PTSSNN_CACHE`` or ``~/.cache/ptssnn/features``.
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def namespace(
        self,
        backbone_identity: Mapping[str, Any],
        layers: str,
        *,
        num_hidden_states: int,
        dtype: str = "float16",
        audio_policy: Mapping[str, Any] | None = None,
    ) -> Namespace:
        """The namespace for one backbone identity, canonical layer spec, dtype and audio policy.

        Raises:
            FeatureCacheError: ``dtype`` is not ``float16`` or ``float32``.
        """
        if dtype not in DTYPES:
            raise FeatureCacheError(f"unknown storage dtype {dtype!r}: use float16 or float32")
        description = {
            "format": FORMAT_VERSION,
            "backbone": dict(backbone_identity),
            "layers": layers,
            "num_hidden_states": num_hidden_states,
            "dtype": dtype,
            "audio": dict(audio_policy or {}),
        }
        return Namespace(self.root, description)

    def namespaces(self) -> list[dict[str, Any]]:
        """Descriptions of the namespaces present, each with ``path``, ``entries`` and ``bytes``."""
        found = []
        for info in sorted(self.root.glob("*/namespace.json")):
            try:
                description = json.loads(info.read_text())
            except (OSError, ValueError):
                continue
            arrays = list(info.parent.glob("entries/*/*.npy"))
            description["path"] = str(info.parent)
            description["entries"] = len(arrays)
            description["bytes"] = sum(a.stat().st_size for a in arrays)
            found.append(description)
        return found
