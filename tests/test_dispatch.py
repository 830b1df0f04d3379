"""A base larger than one device (job `device_map` / `max_memory`): the fixture model dispatched by accelerate over
the "devices" a CPU-only test can make — layers in memory and layers offloaded to disk (an offload folder under
tmp_path) — must score, generate and train exactly as the same model on one device. Offloaded layers run through
accelerate's hooks (weights on `meta` until their forward), which is the path a GPU node's cpu/disk offload takes.

Measured here (fp32, tiny llama, 2 layers, transformers 5.24 / accelerate 1.15 / peft 0.21; `pytest -s` prints
each figure): per-choice log-likelihoods max |Δ| = 4.8e-7 (packed and plain, both maps) when the dispatched scorer
packs 96-token batches against the single-device scorer's default ones — 0.0 with the same batches; greedy
generations identical; after 3 LoRA steps loss |Δ| = 0.0, LoRA weights max |Δ| = 0.0, scores with the adapter
max |Δ| = 0.0 (the stored adapter reused on a dispatched base too); the end-to-end run's per-item rows identical
(log-likelihoods max |Δ| = 0.0), and so with `engine: lm-eval` on a model offloaded whole to disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.config.arms import LoraArm
from evaluator.engine.scorer import PrefixScorer
from evaluator.models.load import device_map_summary, load_model, resolve_source
from tests.test_engine import _prefix, _requests

TOL = 1e-5  # fp32, same kernels on the same CPU: the bound (the measured figure is 0.0)

# the tiny llama (tests/tiny_models.py): embeddings (tied head) and layer 0 in memory, layer 1 and the norm on disk
SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
         "model.norm": "disk", "lm_head": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def data(tok):
    return _prefix(tok), _requests(tok)


def _load(model_dir: Path, cache: Path, **placement):
    return load_model(resolve_source(str(model_dir)), device="cpu" if not placement else "auto", dtype="float32",
                      cache_dir=cache, **placement)


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir, tmp_path_factory):
    """The model on one device, dispatched by an explicit map (memory + disk), and by `auto` with a max_memory
    small enough that accelerate offloads the layers to disk."""
    cache = tmp_path_factory.mktemp("cache")
    return {
        "single": _load(tiny_llama_dir, cache),
        "map": _load(tiny_llama_dir, cache, device_map=SPLIT),
        "max_memory": _load(tiny_llama_dir, cache, device_map="auto", max_memory={"cpu": "300KB"}),
    }


def _max_delta(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        assert x.n_tokens == y.n_tokens and x.is_greedy == y.is_greedy
        worst = max(worst, max(abs(p - q) for p, q in zip(x.loglik, y.loglik, strict=True)))
    return worst


def test_dispatched_load_keeps_its_map(loaded):
    lm = loaded["map"]
    assert lm.device == "cpu"  # the input embeddings' device; the model was not moved afterwards
    params = dict(lm.model.named_parameters())
    assert params["model.layers.1.self_attn.q_proj.weight"].device.type == "meta"  # offloaded: accelerate's hook holds it
    assert params["model.layers.0.self_attn.q_proj.weight"].device.type == "cpu"
    assert device_map_summary(lm.model) == {"devices": ["cpu", "disk"], "layers": {"cpu": 1, "disk": 1},
                                            "input_device": "cpu", "text": "cpu: 1 layer, disk: 1 layer"}
    auto = device_map_summary(loaded["max_memory"].model)
    assert auto is not None and auto["layers"].get("disk", 0) >= 1, auto  # max_memory made accelerate offload
    assert device_map_summary(loaded["single"].model) is None
    assert Path(lm.offload_folder).is_dir()


@pytest.mark.parametrize("placed", ["map", "max_memory"])
@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_prefix_cached_scores_equal_the_single_device_run(loaded, data, mode, placed):
    prefix, reqs = data
    want = PrefixScorer(loaded["single"].model, prefix, mode=mode).score(reqs)
    scorer = PrefixScorer(loaded[placed].model, prefix, mode=mode, max_batch_tokens=96)  # several batches, cache reused
    assert scorer.mode == mode and scorer.device == torch.device("cpu")
    got = scorer.score(reqs)
    delta = _max_delta(got, want)
    print(f"dispatch {placed} {mode}: per-choice log-likelihood max |Δ| = {delta:.3g}")
    assert delta <= TOL, f"{mode}/{placed}: per-choice log-likelihood max |Δ| = {delta:.3g} (measured 4.8e-7)"
    assert _max_delta(scorer.score(reqs[:2]), want[:2]) <= TOL  # the prefix cache is intact after a call


@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_greedy_generation_equals_the_single_device_run(loaded, data, mode):
    prefix, reqs = data
    one = PrefixScorer(loaded["single"].model, prefix, mode=mode)
    placed = PrefixScorer(loaded["map"].model, prefix, mode=mode)
    for r in reqs[:3]:
        assert placed.generate(r.item_ids, max_new_tokens=10) == one.generate(r.item_ids, max_new_tokens=10)


def test_lora_training_step_equals_the_single_device_run(tiny_llama_dir, tok, data, tmp_path):
    """A few LoRA steps (peft on the dispatched base: its offloaded layers get their LoRA weights on the layer's
    execution device), then the adapter reloaded onto another dispatched base and scored."""
    from peft import PeftModel

    from evaluator.arms.lora import _peft_load
    from evaluator.training.data import Example
    from evaluator.training.loop import train_lora

    prefix, reqs = data
    examples = [Example(prefix[:8] + r.item_ids, r.choice_ids[0]) for r in reqs] * 2
    hp = LoraArm(r=4, max_steps=3, batch_size=4, learning_rate=1e-2, dropout=0.0, val_fraction=0.0)
    runs = {}
    for name, placement in [("single", {}), ("map", {"device_map": SPLIT})]:
        lm = _load(tiny_llama_dir, tmp_path, **placement)
        pm, res = train_lora(lm.model, examples, hp, tmp_path / name, seed=5, pad_id=tok.pad_token_id,
                             device=lm.device)
        lora = {n: p.detach().clone() for n, p in pm.named_parameters() if "lora_" in n}
        assert {p.device.type for p in lora.values()} == {"cpu"}  # none on meta: offloaded layers train too
        runs[name] = (res.final_loss, lora, PrefixScorer(pm, prefix).score(reqs))
    (loss1, w1, s1), (loss2, w2, s2) = runs["single"], runs["map"]
    assert w1.keys() == w2.keys()
    dw = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"dispatch LoRA: loss |Δ| = {abs(loss1 - loss2):.3g}, LoRA weights max |Δ| = {dw:.3g}")
    assert abs(loss1 - loss2) <= 1e-6 and dw <= 1e-6, f"loss |Δ| {abs(loss1 - loss2):.3g}, LoRA weights max |Δ| {dw:.3g}"
    ds = _max_delta(s2, s1)
    print(f"dispatch LoRA: scores with the trained adapter max |Δ| = {ds:.3g}")
    assert ds <= TOL, f"scores with the trained adapter: max |Δ| = {ds:.3g}"
    moved = max(abs(p - q) for a, b in zip(s1, PrefixScorer(_load(tiny_llama_dir, tmp_path).model, prefix).score(reqs))
                for p, q in zip(a.loglik, b.loglik))
    assert moved > 1e-3, moved  # the adapter did change the scores: the comparisons above are not of a no-op
    # reusing the stored adapter on a dispatched base keeps the base's map (peft re-dispatches it)
    lm = _load(tiny_llama_dir, tmp_path, device_map=SPLIT)
    reused = _peft_load(lm.model, tmp_path / "single", lm.offload_folder)
    assert isinstance(reused, PeftModel)
    dr = _max_delta(PrefixScorer(reused, prefix).score(reqs), s1)
    print(f"dispatch LoRA: reused adapter on a dispatched base, scores max |Δ| = {dr:.3g}")
    assert dr <= TOL, f"reused adapter on the dispatched base: max |Δ| = {dr:.3g}"
    assert device_map_summary(reused)["layers"] == {"cpu": 1, "disk": 1}


# --- end to end ------------------------------------------------------------------------------------------------------


def _job(tmp: Path, model_dir: Path, **over) -> Path:
    job = {
        "name": "dispatch",
        "tasks": ["snips_intents"],
        "base": str(model_dir),
        "seed": 3,
        "limit": 6,
        "arms": {"prompting": {"shots": [0, 2]}, "lora": {"train_sizes": [8], "max_steps": 2, "batch_size": 4, "r": 4}},
        "output_dir": str(tmp / "runs"),
        "adapters_dir": str(tmp / "adapters"),
        "model_cache": str(tmp / "cache"),
        "dtype": "float32",
    }
    job.update(over)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _results(run_root: Path) -> dict[str, list[dict]]:
    (rd,) = list(run_root.iterdir())
    out = {}
    for p in sorted((rd / "results").glob("*.jsonl")):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        out[p.stem] = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    return out


def test_run_with_device_map_gives_the_same_per_item_results(tiny_llama_dir, tmp_path):
    plain, placed = tmp_path / "plain", tmp_path / "placed"
    for d, over in [(plain, {}), (placed, {"device_map": SPLIT})]:
        d.mkdir()
        res = CliRunner().invoke(app, ["run", str(_job(d, tiny_llama_dir, **over))])
        assert res.exit_code == 0, res.output
    assert "device_map cpu: 1 layer, disk: 1 layer" in res.output  # the load line says where the layers went
    a, b = _results(plain / "runs"), _results(placed / "runs")
    assert a.keys() == b.keys() and {u.split("__")[1] for u in a} == {"A", "B"}
    worst = max(abs(x - y) for u in a for ra, rb in zip(a[u], b[u], strict=True)
                for x, y in zip(ra["loglik"], rb["loglik"], strict=True))
    print(f"dispatch run: per-item log-likelihoods max |Δ| = {worst:.3g} over {sum(map(len, a.values()))} rows")
    assert worst <= TOL, f"per-item log-likelihoods max |Δ| = {worst:.3g}"
    for u in a:
        assert [{k: v for k, v in r.items() if k != "loglik"} for r in a[u]] == \
               [{k: v for k, v in r.items() if k != "loglik"} for r in b[u]], u
    (rd,) = list((placed / "runs").iterdir())
    rec = json.loads(next((rd / "units").glob("*__A__*k0.json")).read_text())
    assert rec["measured_with"]["device_map"]["layers"] == {"cpu": 1, "disk": 1}
    assert rec["measured_with"]["device"].endswith("+ disk (device_map)")


@pytest.mark.parametrize("over, field", [
    ({"device_map": "everywhere"}, "device_map"),
    ({"max_memory": {0: "20GiB"}}, "max_memory"),
    ({"device_map": "auto", "max_memory": {"cpu": "lots"}}, "max_memory.cpu"),
    ({"device_map": {"model.layers.0": "gpu"}}, "device_map.model.layers.0"),
    ({"device_map": "auto", "device": "cpu"}, "device"),
])
def test_bad_placement_exits_2_with_one_line(tiny_llama_dir, tmp_path, over, field):
    res = CliRunner().invoke(app, ["run", str(_job(tmp_path, tiny_llama_dir, **over))])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"field '{field}'" in lines[0] and "Traceback" not in res.output, res.output


def test_train_cli_device_map(tiny_llama_dir, tmp_path):
    """`tunecheck train --device-map auto` (on a CPU box the whole fixture fits: one device) and a bad word: one line."""
    args = ["train", "--model", str(tiny_llama_dir), "--task", "snips_intents", "--n", "8", "--max-steps", "1",
            "--batch-size", "4", "--r", "4", "--adapters-dir", str(tmp_path / "ad"), "--model-cache", str(tmp_path)]
    res = CliRunner().invoke(app, [*args, "--device-map", "auto"])
    assert res.exit_code == 0 and "train adapter_dir=" in res.output, res.output
    for bad, env, needle in [
        (["--device-map", "everywhere"], {}, "--device-map 'everywhere'"),
        (["--device-map", "auto", "--device", "cpu"], {}, "leave --device auto"),
        (["--device-map", "auto"], {"WORLD_SIZE": "2"}, "from a single process"),  # as under accelerate launch
    ]:
        res = CliRunner().invoke(app, [*args, *bad], env=env)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and needle in lines[0], res.output


def test_device_map_with_several_processes_is_refused(monkeypatch):
    from evaluator.errors import UserError
    from evaluator.training.distributed import refuse_device_map_launch

    refuse_device_map_launch(None)
    refuse_device_map_launch("auto")  # one process: fine
    monkeypatch.setenv("WORLD_SIZE", "4")
    refuse_device_map_launch(None)  # data parallel without a device map: fine
    with pytest.raises(UserError, match="launch of 4 processes") as exc:
        refuse_device_map_launch({"": 0})
    assert "\n" not in str(exc.value)


def test_lmeval_engine_scores_the_dispatched_model(tiny_llama_dir, tmp_path):
    """engine: lm-eval with a device_map scores the placed model in memory (lm-eval would load it on one device),
    with its inputs on the embeddings' device even when the whole model is offloaded (its parameters on meta)."""
    arms = {"prompting": {"shots": [2]}, "lora": {"enabled": False}}
    runs = {}
    for name, over in [("plain", {}), ("disk", {"device_map": "auto", "max_memory": {"cpu": "100KB"}})]:
        d = tmp_path / name
        d.mkdir()
        res = CliRunner().invoke(app, ["run", str(_job(d, tiny_llama_dir, engine="lm-eval", arms=arms, **over))])
        assert res.exit_code == 0, res.output
        runs[name] = _results(d / "runs")
    assert "device_map disk: 2 layers" in res.output
    a, b = runs["plain"], runs["disk"]
    worst = max(abs(x - y) for u in a for ra, rb in zip(a[u], b[u], strict=True)
                for x, y in zip(ra["loglik"], rb["loglik"], strict=True))
    print(f"dispatch lm-eval engine: per-item log-likelihoods max |Δ| = {worst:.3g}")
    assert worst <= TOL and [r["prediction"] for u in a for r in a[u]] == [r["prediction"] for u in b for r in b[u]]
