"""The learning-curve sweep as one job (evaluator/training/sweep.py): every adapter trained together over the one
frozen base equals its twin trained alone by `train_lora` — weights, per-step losses, validation, early stopping,
the saved peft folder and its logits — with dropout too, under gradient checkpointing, and with runs that leave
early; and the arms function stores the sweep's adapters so `train_or_reuse` reuses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evaluator.arms.adapters import ADAPTER_META
from evaluator.arms.lora import train_or_reuse, train_sweep
from evaluator.config.arms import LoraArm
from evaluator.models.load import load_model, resolve_source
from evaluator.training.data import Example, _make_batch
from evaluator.training.loop import train_lora
from evaluator.training.loss import _answer_loss_module
from evaluator.training.sweep import SweepRun, SweepUnsupported, sweep_problem, train_lora_sweep
from tests.tiny_models import adapter_weights, sdpa_model

TOL = 1e-5  # max |weight difference| between a sweep adapter and its twin (fp32, CPU)
SIZES, SEEDS = (8, 20, 48), (3, 5, 7)  # 48 items: a validation slice of 8 is held out (n >= 40)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = adapter_weights(a), adapter_weights(b)
    assert wa.keys() == wb.keys() and wa
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _twins(model_dir, exs, hp, out: Path, sizes=SIZES, seeds=SEEDS, val=None):
    """train_lora alone, once per run: the reference each sweep adapter must equal."""
    res = []
    for k, (n, seed) in enumerate(zip(sizes, seeds)):
        v = val[k] if val else None
        _, r = train_lora(sdpa_model(model_dir), exs[:n], hp, out / f"twin{k}", seed=seed, pad_id=0, device="cpu",
                          val_examples=v)
        res.append(r)
    return res


def _sweep(model, exs, hp, out: Path, sizes=SIZES, seeds=SEEDS, val=None, **kw):
    runs = [SweepRun(exs[:n], seed, out / f"sweep{k}", val[k] if val else None)
            for k, (n, seed) in enumerate(zip(sizes, seeds))]
    return train_lora_sweep(model, runs, hp, pad_id=0, device="cpu", **kw)


def _same_record(res, twin, tol: float = TOL) -> None:
    """The sweep's TrainResult for a run says what its twin's says (steps, data, losses, validation)."""
    assert (res.steps, res.n_train, res.n_val, res.tokens_seen, res.answer_tokens_seen, res.shared_prefix_tokens) == \
        (twin.steps, twin.n_train, twin.n_val, twin.tokens_seen, twin.answer_tokens_seen, twin.shared_prefix_tokens)
    assert res.epochs == pytest.approx(twin.epochs) and res.best_step == twin.best_step
    assert res.stopped_early == twin.stopped_early
    assert res.loss_curve == pytest.approx(twin.loss_curve, abs=tol)
    assert res.final_loss == pytest.approx(twin.final_loss, abs=tol)
    assert [s for s, _ in res.val_curve] == [s for s, _ in twin.val_curve]
    assert [v for _, v in res.val_curve] == pytest.approx([v for _, v in twin.val_curve], abs=tol)
    assert res.val_accuracy_curve == twin.val_accuracy_curve
    assert res.train_seconds > 0 and res.peak_mem_mb > 0 and res.adapter_bytes > 0


def test_every_sweep_adapter_equals_its_separately_trained_twin(tiny_llama_dir, examples, tmp_path):
    """Three runs (8, 20, 48 items; different seeds; 2, 5 and 10 steps: the smaller ones leave while the others go
    on) trained as one sweep: weights within 1e-5 of train_lora's twins, the same per-step losses and validation,
    and the saved folders load with peft and give the twins' logits."""
    from peft import PeftModel

    exs, tok = examples
    hp = LoraArm(r=4, epochs=1, batch_size=4, learning_rate=1e-2, dropout=0.0)
    twins = _twins(tiny_llama_dir, exs, hp, tmp_path)
    model = sdpa_model(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls: list[tuple[int, int]] = []
    results = _sweep(model, exs, hp, tmp_path, on_step=lambda i, info: calls.append((i, info.step)))

    assert [r.steps for _, r in results] == [2, 5, 10] and twins[2].n_val == 8  # the small runs left early
    assert all(r.shared_prefix_tokens > 0 for _, r in results)  # the instruction ran once per run and batch
    assert calls == sorted(calls, key=lambda c: (c[1], c[0]))  # one combined step after another
    assert [max(s for i, s in calls if i == k) for k in range(3)] == [2, 5, 10]
    worst = 0.0
    for k, ((folder, res), twin) in enumerate(zip(results, twins)):
        assert folder == tmp_path / f"sweep{k}" and res.adapter_dir == str(folder)
        worst = max(worst, _max_diff(folder, tmp_path / f"twin{k}"))
        _same_record(res, twin)
    print(f"sweep vs twin (dropout 0): max |dweight| {worst:.2e}")
    assert worst <= TOL, worst
    # the base is given back as it was: no LoRA layers, the same weights
    assert not any(hasattr(m, "base_layer") or "lora" in n for n, m in model.named_modules())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters()) and len(before) == len(
        list(model.parameters()))
    # the saved folders load with peft (as evaluator/arms/lora.py loads them) and give their twins' logits
    b = _make_batch(exs[50:56], tok.pad_token_id, pin=False)
    for k in range(3):
        logits = []
        for folder in (tmp_path / f"sweep{k}", tmp_path / f"twin{k}"):
            pm = PeftModel.from_pretrained(sdpa_model(tiny_llama_dir), str(folder))
            with torch.no_grad():
                logits.append(_answer_loss_module(pm, True).answer_logits(b.ids, b.pos))
        assert torch.allclose(logits[0], logits[1], atol=1e-4), float((logits[0] - logits[1]).abs().max())
    cfg = [json.loads((tmp_path / name / "adapter_config.json").read_text()) for name in ("sweep0", "twin0")]
    assert {k: v for k, v in cfg[0].items() if k != "revision"} == {k: v for k, v in cfg[1].items() if k != "revision"}


def test_dropout_masks_are_each_runs_own(tiny_llama_dir, examples, tmp_path):
    """With dropout, each run draws its masks from its own stream (train_lora's: the device generator as seeded for
    it), so a sweep adapter equals train_lora's twin, and the same run trained in a sweep alone — whatever else
    shares the batch — also under gradient checkpointing (a recomputed forward replays the same masks)."""
    exs, _ = examples
    hp = LoraArm(r=4, epochs=1, batch_size=4, learning_rate=1e-2, dropout=0.1)
    sizes, seeds = SIZES[:2], SEEDS[:2]
    twins = _twins(tiny_llama_dir, exs, hp, tmp_path, sizes, seeds)
    together = _sweep(sdpa_model(tiny_llama_dir), exs, hp, tmp_path / "together", sizes, seeds)
    alone = _sweep(sdpa_model(tiny_llama_dir), exs, hp, tmp_path / "alone", sizes[1:], seeds[1:])
    # gradient checkpointing runs every row whole (no shared prefix): the same masks as the sweep without one
    ckpt = hp.model_copy(update={"gradient_checkpointing": True})
    checkpointed = _sweep(sdpa_model(tiny_llama_dir), exs, ckpt, tmp_path / "ckpt", sizes, seeds)
    whole = _sweep(sdpa_model(tiny_llama_dir), exs, hp.model_copy(update={"shared_prefix": False}), tmp_path / "whole",
                   sizes, seeds)
    worst = 0.0
    for k in range(2):
        worst = max(worst, _max_diff(together[k][0], tmp_path / f"twin{k}"))
        worst = max(worst, _max_diff(checkpointed[k][0], whole[k][0]))
        _same_record(together[k][1], twins[k])
    worst = max(worst, _max_diff(alone[0][0], together[1][0]))
    print(f"sweep vs twin (dropout 0.1): max |dweight| {worst:.2e}")
    assert worst <= TOL, worst
    # the masks matter: without them (dropout 0) the same run trains to other weights
    nodrop = _twins(tiny_llama_dir, exs, hp.model_copy(update={"dropout": 0.0}), tmp_path / "nodrop", sizes[1:],
                    seeds[1:])
    assert _max_diff(tmp_path / "nodrop" / "twin0", tmp_path / "twin1") > 100 * TOL
    assert nodrop[0].loss_curve != twins[1].loss_curve


def test_a_run_stops_early_on_its_own_validation(tiny_llama_dir, examples, tmp_path):
    """A run whose validation loss only rises (trained towards answer A, validated on B) stops after `patience`
    bad evaluations with its best weights restored, as its twin does, while the other run trains to the end."""
    exs, tok = examples
    a, b = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    bad_train = [Example(e.context_ids, [a]) for e in exs[:32]]
    bad_val = [Example(e.context_ids, [b]) for e in exs[32:48]]
    good_val = exs[:8]  # items it trains on: its validation loss keeps falling
    hp = LoraArm(r=4, learning_rate=1e-2, max_steps=16, batch_size=8, eval_every=2, patience=2, warmup_ratio=0,
                 dropout=0)
    data = [bad_train, exs[:24]]
    twins = []
    for k, (d, v) in enumerate(zip(data, [bad_val, good_val])):
        _, r = train_lora(sdpa_model(tiny_llama_dir), d, hp, tmp_path / f"twin{k}", seed=11 + k, pad_id=0, device="cpu",
                          val_examples=v)
        twins.append(r)
    runs = [SweepRun(d, 11 + k, tmp_path / f"sweep{k}", v) for k, (d, v) in enumerate(zip(data, [bad_val, good_val]))]
    results = train_lora_sweep(sdpa_model(tiny_llama_dir), runs, hp, pad_id=0, device="cpu")
    stopped, full = results[0][1], results[1][1]
    assert stopped.stopped_early and stopped.steps < 16 and stopped.best_step == stopped.steps - 2 * hp.eval_every
    assert not full.stopped_early and full.steps == 16 and len(full.val_curve) == 8
    worst = max(_max_diff(results[k][0], tmp_path / f"twin{k}") for k in range(2))
    for k in range(2):
        _same_record(results[k][1], twins[k])
    print(f"sweep vs twin (early stop): max |dweight| {worst:.2e}")
    assert worst <= TOL, worst
    # the early-stopped run spent less of the shared time than the one that trained on
    assert stopped.train_seconds < full.train_seconds


def test_the_sweep_refuses_a_distributed_launch(tiny_llama_dir, examples, tmp_path, monkeypatch):
    exs, _ = examples
    model = sdpa_model(tiny_llama_dir)
    hp = LoraArm(r=4, max_steps=1, batch_size=4)
    assert sweep_problem(model, hp) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "distributed launch of 2 processes" in sweep_problem(model, hp)
    with pytest.raises(SweepUnsupported, match="one at a time"):
        train_lora_sweep(model, [SweepRun(exs[:8], 0, tmp_path / "a")], hp, pad_id=0, device="cpu")
    assert not any(hasattr(m, "base_layer") for m in model.modules())


def test_the_sweep_declines_a_dispatched_base_and_packed_batches(tiny_llama_dir):
    """One line each, so the caller trains one adapter at a time: a base spread over devices, packed batches."""
    model = sdpa_model(tiny_llama_dir)
    assert sweep_problem(model, LoraArm()) is None
    assert "packed batches" in sweep_problem(model, LoraArm(packing=True))
    model.hf_device_map = {"model.layers.0": 0, "model.layers.1": 1}
    assert "several devices" in sweep_problem(model, LoraArm())
    model.hf_device_map = {"": 0}  # on one device: fine
    assert sweep_problem(model, LoraArm()) is None


def test_train_sweep_stores_adapters_that_train_or_reuse_reuses(tiny_llama_dir, snips, tmp_path, monkeypatch):
    """arms.lora.train_sweep trains the missing adapters of a sweep in one job and stores each under the key and
    folder train_or_reuse would use (metadata as train_or_reuse writes it); train_or_reuse then reuses them."""
    lm = load_model(resolve_source(str(tiny_llama_dir)), device="cpu")
    hp = LoraArm(r=4, epochs=1, batch_size=8)
    logs: list[str] = []
    # the reference: n=16 trained alone by train_or_reuse in another root
    pm, ref_meta, ref_out = train_or_reuse(lm, snips, 16, hp, 7, tmp_path / "alone", log=logs.append)
    lm.model = pm.unload()
    steps: list[tuple[int, int]] = []
    trained = train_sweep(lm, snips, [16, 24, 16], hp, 7, tmp_path / "sweep", log=logs.append,
                          on_step=lambda n, info: steps.append((n, info.step)))
    assert sorted(trained) == [16, 24] and not any(hasattr(m, "base_layer") for m in lm.model.modules())
    assert {n for n, _ in steps} == {16, 24}
    out = trained[16]
    assert out.name == ref_out.name and not out.with_name(out.name + ".partial").exists()
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta.keys() == ref_meta.keys() and meta["key"] == ref_meta["key"]
    assert meta["training"].keys() == ref_meta["training"].keys() and meta["training"]["adapter_dir"] == str(out)
    same = ("format", "base", "task", "train_size", "data_hash", "train_item_ids", "hyperparameters", "seed",
            "prompt_format")
    assert {k: meta[k] for k in same} == {k: ref_meta[k] for k in same}
    assert meta["training"]["steps"] == ref_meta["training"]["steps"] == 2
    assert _max_diff(out, ref_out) <= TOL  # dropout 0.05 (the default) too: the same masks
    # the runner's per-n step then reuses both; a second sweep trains nothing
    for n in (16, 24):
        pm2, meta2, out2 = train_or_reuse(lm, snips, n, hp, 7, tmp_path / "sweep", log=logs.append)
        assert out2 == trained[n] and logs[-1].startswith("reusing adapter")
        lm.model = pm2.unload()
    assert train_sweep(lm, snips, [16, 24], hp, 7, tmp_path / "sweep", log=logs.append) == {}
    # under a distributed launch the sweep declines and says so; train_or_reuse then trains each one
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_sweep(lm, snips, [8, 12], hp, 7, tmp_path / "ddp", log=logs.append) == {}
    assert "one at a time" in logs[-1] and not (tmp_path / "ddp").exists()



def _simulate_oom(model, max_rows: int) -> list[int]:
    """The last decoder layer runs out of (simulated) GPU memory with more than `max_rows` rows per forward; returns
    the list the row counts of the failed forwards go to."""
    layer, failed = model.model.layers[-1], []
    orig = layer.forward

    def forward(*args, **kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        if h.shape[0] > max_rows:
            failed.append(h.shape[0])
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated: {h.shape[0]} rows)")
        return orig(*args, **kwargs)

    layer.forward = forward
    return failed


def test_out_of_memory_halves_the_combined_batch_and_trains_the_same_adapters(tiny_llama_dir, examples, tmp_path):
    """The combined batch (3 runs x 4 rows) does not fit; the step is taken again in micro-batches of 6, then 3 rows
    (gradient accumulation, each run's own normalisation): the same adapters as the twins. Below one row per forward
    it is train_lora's one-line UserError, and the base comes back without the sweep's layers."""
    from evaluator.errors import UserError

    exs, _ = examples
    hp = LoraArm(r=4, epochs=1, batch_size=4, learning_rate=1e-2, dropout=0.0)
    _twins(tiny_llama_dir, exs, hp, tmp_path)
    model = sdpa_model(tiny_llama_dir)
    failed = _simulate_oom(model, max_rows=3)
    logs: list[str] = []
    results = _sweep(model, exs, hp, tmp_path, log=logs.append)
    assert failed == [12, 6] and len(logs) == 2 and "retrying with 3 items per forward" in logs[1]
    assert all(r.oom_retries == 2 and r.micro_batch_size == 3 for _, r in results)
    worst = max(_max_diff(folder, tmp_path / f"twin{k}") for k, (folder, _) in enumerate(results))
    print(f"sweep vs twin (out of memory, micro-batches of 3 rows): max |dweight| {worst:.2e}")
    assert worst <= TOL, worst

    model = sdpa_model(tiny_llama_dir)
    _simulate_oom(model, max_rows=0)
    with pytest.raises(UserError, match="even with one item per forward"):
        _sweep(model, exs, hp, tmp_path / "floor")
    assert not any(hasattr(m, "base_layer") for m in model.modules()) and not (tmp_path / "floor").exists()


def test_the_runner_trains_the_learning_curve_as_one_sweep_when_asked(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    """`lora.sweep: on`: a run trains its sizes together and evaluates the same adapters (same keys, same scores) as
    `sweep: off`; `auto` on a CPU trains one at a time; the setting does not change the run's id."""
    from typer.testing import CliRunner

    from evaluator.cli.app import app
    from tests.test_run import write_job

    scores, outputs = {}, {}
    for mode in ("on", "off", "auto"):
        d = tmp_path / mode
        d.mkdir()
        job = write_job(d, tiny_llama_dir, tiny_gemma_dir, limit=4, newer=[],
                        arms={"prompting": {"shots": [0]}, "lora": {"train_sizes": [16, 24], "epochs": 1,
                                                                   "batch_size": 8, "r": 4, "sweep": mode}})
        res = CliRunner().invoke(app, ["run", str(job)])
        assert res.exit_code == 0, res.output
        outputs[mode] = res.output
        (run,) = list((d / "runs").iterdir())
        rows = {}
        for f in sorted((run / "results").glob("*__B__*.jsonl")):
            rows[f.stem] = [json.loads(x)["score"] for x in f.read_text().splitlines() if x.strip()]
        scores[mode] = (run.name, rows, sorted(p.name for p in (d / "adapters").rglob("n*-r4-*")))
    assert "training 2 LoRA adapters of snips_intents together (n = 16, 24)" in outputs["on"]
    assert "together" not in outputs["off"] and "together" not in outputs["auto"]  # auto: not on a CPU
    assert len(scores["on"][1]) == 2 and all(scores["on"][1].values())
    assert scores["on"] == scores["off"] == scores["auto"]  # run id, per-item scores, adapter folders (keys)
