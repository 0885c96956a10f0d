"""Safe checkpoints: plain dicts of tensors and primitive metadata, written atomically.

Every file is a dict `{"format": "ctrlprune", "kind": ..., "version": ..., "config": {...}, ...}` saved
with `torch.save` and read back with `torch.load(weights_only=True)`, so loading never runs pickled code.
TD-MPC files (`agents.tdmpc.checkpoint`) predate the "format" key and name it in their kind instead
("ctrlprune/tdmpc-agent"); they are read by the same code.

Every file written here carries `content_sha256`, a sha256 over all its other entries (names, numbers,
strings, tensor dtypes, shapes and bytes). Loading recomputes it and refuses a file whose content changed,
and refuses floating-point tensors holding NaN or infinity (also when writing). A file written before
digests is refused until `python -m agents.checkpoint FILE` adds its digest; such a re-saved file keeps the
sha256 of its earlier bytes in `origin_sha256` (see `checkpoint_identity`). The digest is a checksum against
damage, not a signature: whoever can edit a file can recompute it.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

FORMAT = "ctrlprune"
VERSION = 1
DIGEST_KEY = "content_sha256"
ORIGIN_KEY = "origin_sha256"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what was asked for."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path (also a FileNotFoundError for callers that catch that)."""


def replace_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Replace `path` in one step: `write` fills a temporary file in the same folder, which is then renamed over
    `path`. Readers see the old file or the new one, never a half-written one; concurrent writers do not
    collide; the file gets the usual mode (0644 under the common umask 022); on any failure (e.g. a full disk)
    the temporary file is removed and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` of `obj` to `path`, replacing it atomically (`replace_atomically`)."""
    return replace_atomically(path, lambda handle: torch.save(obj, handle))


def content_digest(blob: dict[str, Any]) -> str:
    """Hex sha256 over every entry of `blob` but its digest: keys, numbers, strings, tensor dtypes, shapes, bytes."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in blob.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Add `value` to `digest` in a form that tells apart types, nesting and order."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif value is None or isinstance(value, (bool, int, float, str, bytes, torch.dtype, torch.device)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise CheckpointError(f"cannot store a {type(value).__name__} in a checkpoint (tensors, numbers, strings, "
                              "lists and dicts only)")


def non_finite_tensors(blob: Any, where: str = "") -> list[str]:
    """Names of the floating-point tensors in `blob` (nested dicts and lists) holding NaN or infinity."""
    if isinstance(blob, torch.Tensor):
        bad = blob.is_floating_point() and not bool(torch.isfinite(blob.detach()).all())
        return [where or "tensor"] if bad else []
    if isinstance(blob, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in blob.items())
    elif isinstance(blob, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(blob))
    else:
        return []
    return [name for key, value in items for name in non_finite_tensors(value, key)]


def save_sealed(blob: dict[str, Any], path: str | Path) -> Path:
    """Write `blob` atomically with its content digest; refuses NaN or infinite weights before writing."""
    bad = non_finite_tensors(blob)
    if bad:
        raise CheckpointError(f"refusing to write {path}: non-finite values (NaN or inf) in {_names(bad)}")
    return atomic_save({**blob, DIGEST_KEY: content_digest(blob)}, path)


def save_checkpoint(path: str | Path, kind: str, config: dict[str, Any], **payload: Any) -> Path:
    """Write `payload` (tensors, state dicts, numbers, strings) atomically to `path`, with its digest."""
    return save_sealed({"format": FORMAT, "kind": kind, "version": VERSION, "config": config, **payload}, path)


def _names(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _is_ctrlprune(blob: Any) -> bool:
    if not isinstance(blob, dict):
        return False
    return blob.get("format") == FORMAT or str(blob.get("kind", "")).startswith(f"{FORMAT}/")


def read_blob(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` of `path`; every failure is one CheckpointError line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.search(r"GLOBAL (\S+)", str(err))
        if code:
            raise CheckpointError(f"{path} holds objects that would run code when loaded ({code.group(1)}): "
                                  "refused, nothing in it was run") from err
        raise CheckpointError(f"{path} is truncated or corrupt, not a readable ctrlprune checkpoint "
                              f"({_reason(err)})") from err
    except IsADirectoryError as err:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from err
    except Exception as err:  # truncated zip, bad magic number, unreadable file, ...
        raise CheckpointError(f"{path} is truncated or corrupt, not a readable ctrlprune checkpoint "
                              f"({_reason(err)})") from err


def _reason(err: BaseException) -> str:
    """The informative line of a torch.load error (torch's weights-only errors wrap it in advice)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def verify_content(path: str | Path, blob: dict[str, Any]) -> None:
    """Refuse `blob` (read from `path`) when its digest is absent or differs, or a weight is NaN or infinite."""
    if DIGEST_KEY not in blob:
        raise CheckpointError(f"{path} has no content digest (written before digests were stored); if you trust "
                              f"the file, add one with: python -m agents.checkpoint {path}")
    if blob[DIGEST_KEY] != content_digest(blob):
        raise CheckpointError(f"{path} was changed after it was written (content digest mismatch): refused")
    bad = non_finite_tensors(blob)
    if bad:
        raise CheckpointError(f"{path} holds non-finite values (NaN or inf) in {_names(bad)}: refused")


def load_checkpoint(path: str | Path, kind: str, hint: str = "", version: int = VERSION) -> dict[str, Any]:
    """Read a checkpoint of the given kind and version after checking its digest and that its weights are
    finite, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory, not a checkpoint file")
        raise CheckpointMissing(f"no checkpoint at {path}." + (f" Create it with: {hint}" if hint else ""))
    blob = read_blob(path)
    if not _is_ctrlprune(blob):
        raise CheckpointError(f"{path} is not a ctrlprune checkpoint")
    if blob.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {kind} checkpoint (it holds kind '{blob.get('kind')}', "
                              f"expected '{kind}')")
    if blob.get("version") != version:
        raise CheckpointError(f"{path} has {kind} checkpoint version {blob.get('version')}, "
                              f"this code reads version {version}")
    verify_content(path, blob)
    return blob


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_digest(path: str | Path) -> bool:
    """Re-save a checkpoint written before digests with its `content_sha256` and, as `origin_sha256`, the
    sha256 of its current bytes; checks that every entry reads back identical. False when it has a digest."""
    path = Path(path)
    blob = read_blob(path)
    if not _is_ctrlprune(blob):
        raise CheckpointError(f"{path} is not a ctrlprune checkpoint")
    if DIGEST_KEY in blob:
        return False
    before = content_digest(blob)
    save_sealed({**blob, ORIGIN_KEY: file_sha256(path)}, path)
    again = read_blob(path)
    verify_content(path, again)
    if content_digest({k: v for k, v in again.items() if k != ORIGIN_KEY}) != before:
        raise CheckpointError(f"{path}: re-saved content differs from the original")
    return True


def checkpoint_identity(path: str | Path) -> str:
    """Hex sha256 naming the checkpoint's content, for result fingerprints and pruned files: its content
    digest; for a file re-saved only to add that digest, the sha256 of its bytes before (what results made
    from it recorded); for a file without a digest, the sha256 of its bytes."""
    blob = read_blob(path)
    if isinstance(blob, dict):
        for key in (ORIGIN_KEY, DIGEST_KEY):
            if isinstance(blob.get(key), str):
                return blob[key]
    return file_sha256(path)


def check_config(path: str | Path, stored: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint whose config differs from `expected` in any of its fields, naming them."""
    diff = {k: (stored.get(k), v) for k, v in expected.items() if stored.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} config differs from the one asked for ({details})")


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.checkpoint FILE...`: add content digests to checkpoints written before them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agents.checkpoint", description=main.__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="ctrlprune checkpoints (*.pt)")
    for path in parser.parse_args(argv).files:
        try:
            added = add_digest(path)
        except (CheckpointError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{path}: {'digest added, content unchanged' if added else 'already has a digest'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
