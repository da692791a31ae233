"""Durable files: the checkpoint format, atomic writes with fsync, SHA-256 digests.

A checkpoint file is a 48-byte header, then a ``torch.save`` payload::

    b"KVCKPT\\x00\\x01"   magic and format version 1
    uint64, big-endian    payload length in bytes
    32 bytes              SHA-256 of the payload

Reading checks the header, the length and the digest before anything is
unpickled, so a truncated, empty or bit-flipped file is reported as corrupt
and never half-loaded. The digest guards against damage, not against a forger
(anyone can recompute it); safety against a crafted file comes from how the
payload is unpickled: ``torch.load(weights_only=True)``, which builds only
tensors, Python primitives and containers, plus numpy arrays and scalars of
numeric and string dtypes (the allow-list below). Any other object, e.g. a
pickle that would call ``os.system``, is refused without being run.

Writes go to a unique temporary file in the target's folder, are flushed
and fsynced, then renamed over the target, and the folder is fsynced: after a
crash or ``kill -9`` the path holds either the old file or the new one.

Example
-------
>>> import tempfile, torch
>>> path = Path(tempfile.mkdtemp()) / "ckpt.pt"
>>> _ = write_checkpoint({"w": torch.ones(2), "step": 3}, path)
>>> read_checkpoint(path)["step"]
3
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import secrets
import struct
import zipfile
from pathlib import Path

MAGIC = b"KVCKPT\x00\x01"
HEADER = struct.Struct(">8sQ32s")
_CHUNK = 1 << 22


class CheckpointError(ValueError):
    """A checkpoint file that is corrupt, of the wrong kind, or holds a state this run cannot take."""


# ----------------------------------------------------------------------------- durable writes
def fsync_path(path) -> None:
    """fsync a file or a directory (a rename is durable only once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_sibling(path: Path) -> Path:
    """A fresh name next to ``path`` (unique per process and call), for write-then-rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _replacing(path):
    """Yield a temporary file to write; on success fsync it, rename it over ``path`` and fsync the folder.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def atomic_write_text(path, text: str) -> Path:
    """Replace ``path`` by ``text`` atomically and durably."""
    with _replacing(path) as f:
        f.write(text.encode())
    return Path(path)


@contextlib.contextmanager
def file_lock(path, wait: bool = True, log=None):
    """Hold an exclusive ``flock`` on ``path`` (created if absent) for the ``with`` block.

    The kernel releases it when the process ends, even by ``kill -9``, so a crash never leaves it held.
    With ``wait=False`` a lock held elsewhere raises ``BlockingIOError`` at once; otherwise this waits,
    saying so through ``log``.
    """
    import fcntl

    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            if log is not None:
                log(f"waiting for {path}, held by another run")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- checkpoint files
class _HashingWriter:
    """File-like sink for ``torch.save`` that hashes and counts what passes through."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class _Window(io.RawIOBase):
    """Read-only view of ``length`` bytes of ``f`` from ``start``: the payload, for ``torch.load``."""

    def __init__(self, f, start: int, length: int):
        self.f, self.start, self.length, self.pos = f, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.length - self.pos))
        self.f.seek(self.start + self.pos)
        got = self.f.readinto(memoryview(buffer)[:n])
        self.pos += got
        return got


def write_checkpoint(obj, path) -> Path:
    """Save ``obj`` (tensors, primitives, numpy arrays) to ``path`` atomically, with a length and SHA-256 header.

    Leftover temporary files of this path from a killed writer are removed after a successful write.
    """
    import torch

    path = Path(path)
    with _replacing(path) as f:
        f.write(bytes(HEADER.size))
        sink = _HashingWriter(f)
        torch.save(obj, sink)
        f.seek(0)
        f.write(HEADER.pack(MAGIC, sink.size, sink.sha.digest()))
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    return path


def read_checkpoint(path):
    """Load a file written by :func:`write_checkpoint`, checking it whole before anything is unpickled.

    Raises ``FileNotFoundError`` when ``path`` does not exist and :class:`CheckpointError` when it is
    not a checkpoint, is corrupt (empty, truncated, extended or altered: length or digest mismatch), or
    holds objects outside the allow-list (refused, never constructed).
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        hint = f"; did you mean {path / 'checkpoint.pt'}?" if (path / "checkpoint.pt").is_file() else ""
        raise CheckpointError(f"checkpoint {path} is not a file{hint}")
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
        if not head:
            raise CheckpointError(f"checkpoint {path} is corrupt: the file is empty")
        if not (head.startswith(MAGIC[:6]) or MAGIC[:6].startswith(head)):
            raise CheckpointError(
                f"{path} is not a kernelvalue checkpoint (no KVCKPT header). Checkpoints are written by "
                "reproduce.trainer; files from before checkpoint format 1 were plain pickles, which are not "
                "unpickled any more (they could run code): re-run, or convert them with code you trust."
            )
        if len(head) < HEADER.size:
            raise CheckpointError(f"checkpoint {path} is corrupt: truncated inside its {HEADER.size}-byte header")
        magic, length, digest = HEADER.unpack(head)
        if magic != MAGIC:
            raise CheckpointError(
                f"checkpoint {path} has format version {magic[6:]!r}, this code reads version {MAGIC[6:]!r} "
                "(or the header is corrupt)"
            )
        actual = os.fstat(f.fileno()).st_size - HEADER.size
        if actual != length:
            what = "truncated" if actual < length else "longer than written"
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {what} (header says {length} payload bytes, file has {actual})"
            )
        sha = hashlib.sha256()
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            sha.update(chunk)
        if sha.digest() != digest:
            raise CheckpointError(f"checkpoint {path} is corrupt: SHA-256 of its payload does not match its header")
        if not hasattr(torch.serialization, "safe_globals"):
            raise RuntimeError(f"reading checkpoints safely needs torch >= 2.5, this is torch {torch.__version__}")
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(_Window(f, HEADER.size, length), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"checkpoint {path} refused: it holds objects other than tensors, Python primitives and numeric "
                f"numpy arrays, so it was not written by this trainer; nothing in it was run. ({err})"
            ) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} is corrupt: its payload does not load ({err})") from err


def _safe_globals() -> list:
    """What ``weights_only`` may build beyond tensors and primitives: numpy arrays and scalars of
    numeric, bool and string dtypes (no object dtype, so no arbitrary objects inside arrays)."""
    import numpy as np

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # the numpy version's own pickle hooks
    scalar = np.float64(0).__reduce__()[0]
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdgFDGUS"}
    return [np.ndarray, np.dtype, reconstruct, scalar, *dtypes]
