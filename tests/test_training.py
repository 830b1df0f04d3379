"""LoRA training: answer-only loss, length grouping, early stopping, determinism, adapter assets, train/eval CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from evaluator.arms.adapters import ADAPTER_META
from evaluator.arms.lora import train_or_reuse
from evaluator.cli.app import app
from evaluator.config.arms import LoraArm
from evaluator.models.load import load_model, resolve_source
from evaluator.training.data import (
    IGNORE,
    Example,
    _make_batch,
    collate,
    length_grouped_batches,
    padded_tokens,
    random_batches,
    shared_prefix_len,
)
from evaluator.training.loop import _packing_plan, train_lora
from evaluator.training.loss import _answer_loss_module, answer_loss
from tests.tiny_models import adapter_weights, build_tiny_model, sdpa_model

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_collate_puts_loss_on_answer_tokens_only():
    exs = [Example([1, 5, 6, 7], [40, 41]), Example([1, 8], [42])]
    ids, labels, mask = collate(exs, pad_id=0)
    assert ids.tolist() == [[1, 5, 6, 7, 40, 41], [1, 8, 42, 0, 0, 0]]
    assert labels.tolist() == [[IGNORE] * 4 + [40, 41], [IGNORE, IGNORE, 42] + [IGNORE] * 3]
    assert mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    # the training batch: the hidden state at position t predicts token t+1, answer tokens only
    b = _make_batch(exs, pad_id=0, pin=False)
    assert b.pos.tolist() == [3, 4, 6 + 1] and b.tgt.tolist() == [40, 41, 42]
    assert b.tokens == 9 and b.targets == 3


@pytest.mark.parametrize("arch", ["tiny_llama_dir", "tiny_qwen_dir", "tiny_gemma_dir"])
def test_answer_only_logits_equal_the_full_forward_loss(request, arch, examples):
    """Logits only at answer positions, no attention mask (right padding + causal): same loss as transformers' own
    masked forward with labels (Gemma 3: soft-capping and sliding-window layers included)."""
    from peft import LoraConfig, get_peft_model

    exs, tok = examples
    batch = exs[:6]
    assert max(len(e) for e in batch) > 32  # longer than the Gemma fixture's sliding window
    model = sdpa_model(request.getfixturevalue(arch))
    if model.config.model_type == "gemma3_text":
        model.config.final_logit_softcapping = 5.0
    pm = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    b = _make_batch(batch, tok.pad_token_id, pin=False)
    ids, labels, mask = collate(batch, tok.pad_token_id)
    with torch.no_grad():
        ref = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
        fast = _answer_loss_module(pm, True)(b.ids, b.pos, b.tgt, float(b.targets))
        full = _answer_loss_module(pm, False)(b.ids, b.pos, b.tgt, float(b.targets))
    assert torch.allclose(fast, ref, atol=1e-5) and torch.allclose(full, ref, atol=1e-5)


def test_shared_prefix_len_edges():
    """The common leading ids, capped so every predicting position follows them; off for one row or a short one."""
    p = list(range(1, 21))  # 20 shared ids
    rows = [Example(p + [30, 31], [40]), Example(p + [32], [41, 42]), Example(p + [33, 34, 35], [43])]
    assert shared_prefix_len(rows) == 20
    assert shared_prefix_len(rows[:1]) == 0  # one row: nothing to share
    assert shared_prefix_len([Example(p, [40]), Example(p + [32], [41])]) == 19  # position 19 predicts a target
    assert shared_prefix_len([Example(p[:5] + [30], [40]), Example(p[:5] + [31], [41])]) == 0  # under the minimum
    assert shared_prefix_len([Example([9] + p, [40]), Example(p, [41])]) == 0  # differ at the first id
    b = _make_batch(rows, pad_id=0, pin=False, share_prefix=True)
    width = max(len(e) for e in rows) - 20  # the suffix's width: positions index its hidden states
    assert b.prefix == 20 and b.pos.tolist() == [1, width + 0, width + 1, 2 * width + 2]
    assert b.tgt.tolist() == [40, 41, 42, 43] and b.tokens == sum(len(e) for e in rows)


@pytest.mark.parametrize("arch", ["tiny_llama_dir", "tiny_qwen_dir", "tiny_gemma_dir"])
def test_shared_prefix_and_packing_give_the_padded_batch_loss_and_gradients(request, arch, examples):
    """The common prefix run once (its keys/values repeated to the rows), the rows packed into one without padding
    (block-diagonal mask), and both together: the same loss and the same LoRA gradients as padded rows that each run
    their whole sequence (Gemma 3: rows longer than its 32-token sliding window, so the window is in the mask)."""
    from peft import LoraConfig, get_peft_model

    from evaluator.engine.masks import packed_support

    exs, tok = examples
    rng = random.Random(5)  # rows of different lengths: a padded batch of them has real padding to drop
    batch = [Example(e.context_ids + e.context_ids[-rng.randint(0, 12):], e.answer_ids) for e in exs[:6]]
    model = sdpa_model(request.getfixturevalue(arch))
    pm = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0))
    for n, w in pm.named_parameters():  # B = 0 at init would leave the gradients to A at zero
        if "lora_B" in n:
            torch.nn.init.normal_(w, std=0.05)
    plan, why = packed_support(pm)
    assert plan is not None, why
    module = _answer_loss_module(pm, True, plan)
    grads = {}
    for share, pack in [(False, False), (True, False), (False, True), (True, True)]:
        b = _make_batch(batch, tok.pad_token_id, pin=False, share_prefix=share, pack=pack)
        assert (b.prefix > 32) == share  # the whole instruction is shared, longer than Gemma's window
        assert (b.ids.shape[0] == 1 and b.ids.numel() == b.tokens - 5 * b.prefix) if pack else b.ids.shape[0] == 6
        pm.zero_grad()
        loss = module(b.ids, b.pos, b.tgt, float(b.targets), b.prefix, b.seg, b.q_pos)
        loss.backward()
        grads[share, pack] = (loss.detach(), {n: w.grad.clone() for n, w in pm.named_parameters() if w.requires_grad})
    l0, g0 = grads[False, False]
    assert len(g0) > 0 and all(g.abs().max() > 0 for g in g0.values())
    for key, (loss, g) in grads.items():
        assert torch.allclose(loss, l0, atol=1e-6), key
        assert g.keys() == g0.keys()
        for n in g0:
            torch.testing.assert_close(g[n], g0[n], atol=1e-6, rtol=1e-4, msg=f"{key} {n}")


def test_packed_batch_layout():
    """Packed: the rows after the prefix side by side, each token's row and position, answer positions into it."""
    p = list(range(1, 11))  # 10 shared ids
    rows = [Example(p + [30], [40, 41]), Example(p + [31, 32], [42])]
    b = _make_batch(rows, pad_id=0, pin=False, share_prefix=True, pack=True)
    assert b.prefix == 10 and b.ids.tolist() == [p + [30, 40, 41, 31, 32, 42]]
    assert b.seg.tolist() == [0, 0, 0, 1, 1, 1] and b.q_pos.tolist() == [10, 11, 12, 10, 11, 12]
    assert b.pos.tolist() == [0, 1, 4] and b.tgt.tolist() == [40, 41, 42]  # hidden state t predicts token t+1
    b = _make_batch(rows, pad_id=0, pin=False, pack=True)  # no prefix: whole rows
    assert b.prefix == 0 and b.ids.shape == (1, 26) and b.q_pos.tolist() == list(range(13)) * 2
    assert b.pos.tolist() == [10, 11, 13 + 11]


def test_packing_trains_the_same_adapter_and_falls_back_where_unsupported(tiny_llama_dir, examples, tmp_path):
    """train_lora with packing (dropout 0): the adapter of padded training within 1e-5, no padding counted; on an
    attention kernel that takes no custom mask it says so and trains padded."""
    exs, tok = examples
    out, logs = {}, []
    for pack in (False, True):
        hp = LoraArm(r=4, max_steps=4, batch_size=8, learning_rate=1e-2, dropout=0.0, val_fraction=0, packing=pack,
                     group_by_length=False)
        _, res = train_lora(sdpa_model(tiny_llama_dir), exs[:32], hp, tmp_path / str(pack), seed=3, pad_id=tok.pad_token_id,
                            device="cpu", log=logs.append)
        out[pack] = adapter_weights(tmp_path / str(pack))
        assert (res.padding_fraction == 0.0) == pack
    diff = max(float((out[False][k] - out[True][k]).abs().max()) for k in out[False])
    assert diff <= 1e-5, diff
    assert not logs
    model = sdpa_model(tiny_llama_dir)
    model.config._attn_implementation = "flash_attention_2"  # only the plan is asked: no forward runs with it
    assert _packing_plan(model, LoraArm(packing=True), logs.append) is None
    assert logs and logs[-1].startswith("packing off, padded batches instead: attn_implementation")


def test_shared_prefix_trains_the_same_adapter(tiny_llama_dir, examples, tmp_path):
    """train_lora with and without the shared prefix (dropout 0): the same adapter after a few steps, within 1e-5."""
    exs, tok = examples
    out = {}
    for share in (False, True):
        hp = LoraArm(r=4, max_steps=4, batch_size=8, learning_rate=1e-2, dropout=0.0, val_fraction=0, shared_prefix=share)
        _, res = train_lora(sdpa_model(tiny_llama_dir), exs[:32], hp, tmp_path / str(share), seed=3, pad_id=tok.pad_token_id,
                            device="cpu")
        out[share] = adapter_weights(tmp_path / str(share))
        prefix = shared_prefix_len(exs[:32])  # every item's instruction; each 8-row batch skips 7 copies of it
        assert res.shared_prefix_tokens == (4 * 7 * prefix if share else 0) and prefix > 0
    assert out[False].keys() == out[True].keys()
    diff = max(float((out[False][k] - out[True][k]).abs().max()) for k in out[False])
    moved = max(float(w.abs().max()) for k, w in out[False].items() if "lora_B" in k)
    assert diff <= 1e-5 and moved > 1e-3, (diff, moved)


def test_length_grouping_reduces_padding(examples):
    exs, _ = examples
    rng = random.Random(0)
    mixed = [Example(e.context_ids * rng.randint(1, 4), e.answer_ids) for e in exs]  # 60 to 400 tokens
    real_g, padded_g = padded_tokens(mixed, length_grouped_batches(mixed, 8, random.Random(1)))
    real_r, padded_r = padded_tokens(mixed, random_batches(mixed, 8, random.Random(1)))
    assert real_g == real_r == sum(len(e) for e in mixed)
    assert (padded_g - real_g) < 0.25 * (padded_r - real_r), (padded_g, padded_r, real_g)
    batches = length_grouped_batches(mixed, 8, random.Random(2))  # every item exactly once per epoch
    assert sorted(i for b in batches for i in b) == list(range(len(mixed)))


def test_early_stopping_stops_and_restores_best(tiny_llama_dir, examples, tmp_path):
    """Train towards answer A while validation expects B: validation loss only rises, so training stops after
    `patience` bad evaluations and the adapter is rolled back to the best evaluated step."""
    exs, tok = examples
    a, b = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    train = [Example(e.context_ids, [a]) for e in exs[:32]]
    val = [Example(e.context_ids, [b]) for e in exs[32:48]]
    hp = LoraArm(r=4, learning_rate=5e-2, max_steps=40, batch_size=8, eval_every=2, patience=2, warmup_ratio=0, dropout=0)
    pm, res = train_lora(sdpa_model(tiny_llama_dir), train, hp, tmp_path / "ad", seed=0, pad_id=tok.pad_token_id, device="cpu", val_examples=val)
    assert res.stopped_early and res.steps < 40 and res.n_val == 16
    curve = dict((int(s), v) for s, v in res.val_curve)
    assert res.best_step == min(curve, key=curve.get) and res.steps - res.best_step == 2 * hp.eval_every
    assert curve[res.steps] > res.best_val_loss
    assert answer_loss(pm, val, tok.pad_token_id, "cpu") == pytest.approx(res.best_val_loss, abs=1e-4)  # restored
    assert res.loss_curve[-1] < res.loss_curve[0]  # the training loss itself went down


def test_same_seed_same_adapter_weights(tiny_llama_dir, examples, tmp_path):
    exs, tok = examples
    hp = LoraArm(r=4, max_steps=4, batch_size=8, learning_rate=1e-2)  # dropout on: its RNG is seeded too
    runs = {}
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        _, res = train_lora(sdpa_model(tiny_llama_dir), exs[:32], hp, tmp_path / name, seed=seed, pad_id=tok.pad_token_id, device="cpu")
        runs[name] = adapter_weights(tmp_path / name)
        assert res.steps == 4 and res.tokens_seen > 0 and res.adapter_bytes > 0 and res.peak_mem_mb > 0
    assert runs["a"].keys() == runs["b"].keys()
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_adapter_metadata_written_then_reused(tiny_llama_dir, snips, tmp_path):
    lm = load_model(resolve_source(str(tiny_llama_dir)), device="cpu")
    hp = LoraArm(r=4, epochs=1, batch_size=8)
    logs: list[str] = []
    pm, meta, out = train_or_reuse(lm, snips, 16, hp, 7, tmp_path, log=logs.append)
    lm.model = pm.unload()
    on_disk = json.loads((out / ADAPTER_META).read_text())
    assert on_disk["format"] == "tunecheck-adapter/1" and on_disk["key"] == meta["key"] and out.name.endswith(meta["key"])
    base = on_disk["base"]
    assert base["source"] == str(tiny_llama_dir) and base["model_type"] == "llama" and "revision" in base
    assert base["config_sha256"] and len(base["weights_probe"]) == 64
    assert on_disk["task"] == "snips_intents" and on_disk["train_size"] == 16 and len(on_disk["data_hash"]) == 16
    assert on_disk["hyperparameters"]["r"] == 4 and on_disk["hyperparameters"]["val_fraction"] == 0.1
    tr = on_disk["training"]
    for k in ("train_seconds", "tokens_seen", "peak_mem_mb", "adapter_bytes", "tokens_per_second"):
        assert tr[k] > 0, k
    assert tr["n_val"] == 0 and on_disk["metrics"]["train_loss"] > 0  # n < 40: no validation slice
    assert (out / "adapter_config.json").is_file() and not out.with_name(out.name + ".partial").exists()
    stamp = (out / "adapter_model.safetensors").stat().st_mtime_ns
    pm2, meta2, out2 = train_or_reuse(lm, snips, 16, hp, 7, tmp_path, log=logs.append)
    assert out2 == out and meta2["key"] == meta["key"] and logs[-1].startswith("reusing adapter")
    assert (out / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    lm.model = pm2.unload()


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("cli")
    res = CliRunner().invoke(app, [
        "train", "--model", str(tiny_llama_dir), "--task", "snips_intents", "--n", "48", "--epochs", "2",
        "--batch-size", "8", "--r", "4", "--device", "cpu", "--adapters-dir", str(tmp / "adapters"),
    ])
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=", 1) for kv in last.split()[1:])
    assert last.startswith("train ") and fields["reused"] == "false"
    return Path(fields["adapter_dir"]), tmp


def test_cli_train_then_eval(trained_adapter):
    adapter, tmp = trained_adapter
    meta = json.loads((adapter / ADAPTER_META).read_text())
    assert meta["training"]["n_val"] == 8 and meta["training"]["n_train"] == 40 and meta["metrics"]["val_curve"]
    res = CliRunner().invoke(app, ["eval", "--adapter", str(adapter), "--limit", "10", "--device", "cpu", "--output", str(tmp / "e.json")])
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("eval task=snips_intents accuracy=") and "n=10" in last
    data = json.loads((tmp / "e.json").read_text())
    assert len(data["items"]) == 10 and 0 <= data["summary"]["value"] <= 1
    evals = json.loads((adapter / ADAPTER_META).read_text())["evaluations"]
    assert len(evals) == 1 and evals[0]["n_items"] == 10  # recorded with the asset
    # the same training again is reused, not retrained
    again = CliRunner().invoke(app, ["train", "--model", meta["base"]["source"], "--task", "snips_intents", "--n", "48",
                                     "--epochs", "2", "--batch-size", "8", "--r", "4", "--device", "cpu",
                                     "--adapters-dir", str(tmp / "adapters")])
    assert again.exit_code == 0 and "reused=true" in again.stdout


@pytest.fixture(scope="module")
def other_llama_dir(tmp_path_factory, tiny_tokenizer_dir):
    return build_tiny_model(tmp_path_factory.mktemp("llama3"), "llama", tiny_tokenizer_dir, seed=3)


@pytest.mark.parametrize("other", ["tiny_gemma_dir", "other_llama_dir"])
def test_eval_on_another_base_exits_2_naming_both(request, trained_adapter, tiny_llama_dir, other):
    adapter, _ = trained_adapter
    other_dir = request.getfixturevalue(other)
    res = subprocess.run([sys.executable, "-m", "evaluator.cli", "eval", "--adapter", str(adapter), "--model", str(other_dir),
                          "--limit", "4", "--device", "cpu"], capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(tiny_llama_dir) in lines[0] and str(other_dir) in lines[0]
    assert ("different architecture" if other == "tiny_gemma_dir" else "different weights") in lines[0]


def test_gradient_checkpointing_changes_memory_not_math(tiny_llama_dir, examples, tmp_path):
    exs, tok = examples
    curves = []
    for gc in (False, True):
        hp = LoraArm(r=4, max_steps=3, batch_size=8, learning_rate=1e-2, dropout=0, gradient_checkpointing=gc)
        _, res = train_lora(sdpa_model(tiny_llama_dir), exs[:24], hp, tmp_path / str(gc), seed=1, pad_id=tok.pad_token_id, device="cpu")
        curves.append(res.loss_curve)
    assert curves[0] == pytest.approx(curves[1], rel=1e-5)


def test_train_cli_bad_options_exit_2(tiny_llama_dir, tmp_path):
    for args, needle in [(["--n", "zero"], "--n 'zero'"), (["--r", "0"], "field 'r'")]:
        res = subprocess.run([sys.executable, "-m", "evaluator.cli", "train", "--model", str(tiny_llama_dir), "--task", "snips_intents",
                              "--adapters-dir", str(tmp_path), *args], capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=300)
        lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr


def test_throughput_benchmark_runs_and_prints_its_line(tiny_llama_dir):
    res = subprocess.run([sys.executable, "benchmarks/lora_throughput.py", "--model", str(tiny_llama_dir), "--device", "cpu",
                          "--steps", "2", "--warmup", "1", "--batch-size", "4", "--threads", "1"], capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split()[1:])
    assert last.startswith("lora_throughput ") and set(fields) == {"ours_tok_s", "default_tok_s", "ratio", "peak_mem_mb"}
    assert float(fields["ours_tok_s"]) > 0 and float(fields["default_tok_s"]) > 0
    assert float(fields["ratio"]) == pytest.approx(float(fields["ours_tok_s"]) / float(fields["default_tok_s"]), rel=1e-2)


def test_weights_probe_on_large_matrices_stays_in_range():
    """Regression: a float32 linspace over 28M elements rounded past the last index (crashed the real demo)."""
    import torch

    from evaluator.arms.adapters import weights_probe

    m = torch.nn.Sequential(torch.nn.Embedding(49152, 576), torch.nn.Linear(576, 49152))
    a = weights_probe(m)
    assert len(a) > 0 and a == weights_probe(m)
