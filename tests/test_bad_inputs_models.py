"""Bad models, tokenizers, weight files, adapters and devices: each exits 2 with one line naming the problem and the
fix, no traceback, earlier results intact (tests/bad_input_harness.py). A model is never scored with weights it was
not saved with (missing / unexpected / reshaped tensors are refused, not randomly initialised)."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.errors import UserError
from tests.bad_input_harness import cases, check, make_finished_run
from tests.test_bad_inputs import _job

TRAIN = ["--task", "snips_intents", "--n", "8", "--max-steps", "1"]
NO_LORA = {"prompting": {"shots": [0]}, "lora": {"enabled": False}}


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _copy(m: str, d: Path, name: str = "model") -> Path:
    out = d / name
    shutil.copytree(m, out)
    return out


def _weights(folder: Path) -> Path:
    return folder / "model.safetensors"


def _edit_tensors(folder: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    sd = fn(load_file(_weights(folder)))
    save_file(sd, _weights(folder), metadata={"format": "pt"})


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _run(d: Path, model: Path | str, **over) -> list[str]:
    return ["run", str(_job(d, str(model), **over))]


@functools.cache
def _trained_adapter(model: str) -> Path:
    """One tiny adapter (1 step) per model, trained once per session; cases copy it and damage the copy."""
    root = Path(tempfile.mkdtemp(prefix="tunecheck-adapter-"))
    res = CliRunner().invoke(app, ["train", "--model", model, *TRAIN, "--adapters-dir", str(root), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    (meta,) = list(root.rglob("tunecheck-adapter.json"))
    return meta.parent


def _adapter(d: Path, m: str) -> Path:
    out = d / "ad"
    shutil.copytree(_trained_adapter(m), out)
    return out


def _meta_edit(d: Path, m: str, fn) -> list[str]:
    ad = _adapter(d, m)
    p = ad / "tunecheck-adapter.json"
    meta = json.loads(p.read_text())
    p.write_text(json.dumps(fn(meta)))
    return ["eval", "--adapter", str(ad), "--limit", "2", "--device", "cpu"]


def _absent_cuda() -> str:
    return "cuda:99" if torch.cuda.is_available() else "cuda"


# --------------------------------------------------------------------------------------------------------------------
# weights that do not match the config: missing, unexpected, reshaped


def case_missing_layer_tensors(d, m, existing):
    f = _copy(m, d)
    _edit_tensors(f, lambda sd: {k: v for k, v in sd.items() if not k.startswith("model.layers.1.")})
    return _run(d, f), "missing from the weight files: model.layers.1."


def case_missing_embeddings(d, m, existing):
    f = _copy(m, d)
    _edit_tensors(f, lambda sd: {k: v for k, v in sd.items() if k != "model.embed_tokens.weight"})
    return _run(d, f), "model.embed_tokens.weight"


def case_untied_head_missing(d, m, existing):
    f = _copy(m, d)
    _edit_config(f, tie_word_embeddings=False)  # lm_head is no longer the embeddings: the file has no lm_head
    return _run(d, f), "lm_head.weight"


def case_unexpected_tensor(d, m, existing):
    f = _copy(m, d)
    _edit_tensors(f, lambda sd: {**sd, "model.layers.0.self_attn.extra.weight": torch.zeros(4, 4)})
    return _run(d, f), "unexpected tensor(s) in the weight files that its config.json does not use: model.layers.0.self_attn.extra.weight"


def case_fewer_layers_in_config(d, m, existing):
    f = _copy(m, d)
    _edit_config(f, num_hidden_layers=1)
    return _run(d, f), "unexpected tensor(s)"


def case_qwen2_weights_under_llama_config(d, m, existing):
    f = _copy(m, d)
    shutil.copy(_weights(Path(QWEN[0])), _weights(f))  # qwen2 attention has q/k/v biases; llama has none
    return _run(d, f), "self_attn.k_proj.bias"


def case_llama_weights_under_qwen2_config(d, m, existing):
    f = _copy(QWEN[0], d)
    shutil.copy(_weights(Path(m)), _weights(f))
    return _run(d, f), "missing from the weight files"


def case_wrong_hidden_size(d, m, existing):
    f = _copy(m, d)
    _edit_config(f, hidden_size=32, intermediate_size=64)
    return _run(d, f), "have another shape than its config.json: model.embed_tokens.weight"


def case_wrong_vocab_size(d, m, existing):
    f = _copy(m, d)
    _edit_config(f, vocab_size=600)
    return _run(d, f), "model.embed_tokens.weight (file (512, 64), config (600, 64))"


# --------------------------------------------------------------------------------------------------------------------
# tokenizer larger than the embeddings


def case_tokenizer_with_added_tokens(d, m, existing):
    from transformers import AutoTokenizer

    f = _copy(m, d)
    tok = AutoTokenizer.from_pretrained(f)
    tok.add_tokens([f"<extra_{i}>" for i in range(8)])  # no resize_token_embeddings: ids 512..519 have no row
    tok.save_pretrained(f)
    return _run(d, f), "produces token ids up to 519 but the model has only 512 embedding rows"


def case_tokenizer_of_a_bigger_vocab(d, m, existing):
    f = _copy(m, d)
    _edit_config(f, vocab_size=500)  # a consistent 500-row model under the 512-token tokenizer
    _edit_tensors(f, lambda sd: {**sd, "model.embed_tokens.weight": sd["model.embed_tokens.weight"][:500].clone()})
    return _run(d, f), "only 500 embedding rows"


# --------------------------------------------------------------------------------------------------------------------
# corrupt weight files


def case_truncated_weights(d, m, existing):
    f = _copy(m, d)
    _truncate(_weights(f))
    return _run(d, f), f"{_weights(f)} is truncated or corrupt"


def case_zero_byte_weights(d, m, existing):
    f = _copy(m, d)
    _weights(f).write_bytes(b"")
    return _run(d, f), "model.safetensors is truncated or corrupt"


def case_garbage_weights(d, m, existing):
    f = _copy(m, d)
    _weights(f).write_bytes(b"this is not a safetensors file\n" * 64)
    return _run(d, f), "re-download or re-convert it"


def case_truncated_shard(d, m, existing):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    f = d / "sharded"
    AutoModelForCausalLM.from_pretrained(m).save_pretrained(f, max_shard_size="100KB")
    AutoTokenizer.from_pretrained(m).save_pretrained(f)
    shards = sorted(f.glob("model-*.safetensors"))
    assert len(shards) > 1
    _truncate(shards[-1], 0.3)
    return _run(d, f), f"{shards[-1].name} is truncated or corrupt"


def case_train_on_truncated_weights(d, m, existing):
    f = _copy(m, d)
    _truncate(_weights(f))
    return ["train", "--model", str(f), *TRAIN, "--device", "cpu"], "is truncated or corrupt"


# --------------------------------------------------------------------------------------------------------------------
# damaged adapters


def case_truncated_adapter_weights(d, m, existing):
    ad = _adapter(d, m)
    _truncate(ad / "adapter_model.safetensors")
    return ["eval", "--adapter", str(ad), "--limit", "2", "--device", "cpu"], "adapter_model.safetensors is truncated or corrupt"


def case_zero_byte_adapter_weights(d, m, existing):
    ad = _adapter(d, m)
    (ad / "adapter_model.safetensors").write_bytes(b"")
    return ["eval", "--adapter", str(ad), "--device", "cpu"], "train the adapter again"


def case_adapter_meta_is_a_list(d, m, existing):
    return _meta_edit(d, m, lambda meta: []), "tunecheck-adapter.json is not tunecheck adapter metadata (a JSON list"


def case_adapter_meta_without_format(d, m, existing):
    return _meta_edit(d, m, lambda meta: {k: v for k, v in meta.items() if k != "format"}), "no 'format'"


def case_adapter_meta_without_task(d, m, existing):
    return _meta_edit(d, m, lambda meta: {k: v for k, v in meta.items() if k != "task"}), "tunecheck-adapter.json is damaged tunecheck adapter metadata: field 'task' is missing"


def case_adapter_meta_task_not_a_string(d, m, existing):
    return _meta_edit(d, m, lambda meta: {**meta, "task": 7}), "field 'task' must be a task name, got number"


def case_adapter_meta_base_not_an_object(d, m, existing):
    return _meta_edit(d, m, lambda meta: {**meta, "base": "llama"}), "field 'base' must be an object"


def case_adapter_meta_training_incomplete(d, m, existing):
    return _meta_edit(d, m, lambda meta: {**meta, "training": {"steps": 1}}), "field 'training.train_seconds' must be a number"


def case_adapter_meta_seed_not_an_int(d, m, existing):
    return _meta_edit(d, m, lambda meta: {**meta, "seed": "abc"}), "field 'seed' must be an integer, got string"


def case_adapter_meta_evaluations_not_a_list(d, m, existing):
    return _meta_edit(d, m, lambda meta: {**meta, "evaluations": {"a": 1}}), "field 'evaluations' must be a list"


# --------------------------------------------------------------------------------------------------------------------
# devices and dtypes of `train` / `eval` (a job file's are checked by its schema)


def case_train_unknown_device(d, m, existing):
    return ["train", "--model", m, *TRAIN, "--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"


def case_eval_unknown_device(d, m, existing):
    ad = _adapter(d, m)
    return ["eval", "--adapter", str(ad), "--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"


def case_train_unknown_dtype(d, m, existing):
    return ["train", "--model", m, *TRAIN, "--dtype", "float8"], "--dtype 'float8': use auto, float32, bfloat16 or float16"


def case_eval_unknown_dtype(d, m, existing):
    ad = _adapter(d, m)
    return ["eval", "--adapter", str(ad), "--dtype", "int4"], "--dtype 'int4'"


def case_train_absent_cuda(d, m, existing):
    return ["train", "--model", m, *TRAIN, "--device", _absent_cuda()], "requested but"


def case_eval_absent_cuda(d, m, existing):
    ad = _adapter(d, m)
    return ["eval", "--adapter", str(ad), "--device", _absent_cuda()], "requested but"


def case_train_absent_mps(d, m, existing):
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    return ["train", "--model", m, *TRAIN, "--device", "mps"], "MPS (Apple GPU) is not available"


def case_job_absent_cuda(d, m, existing):
    return _run(d, m, arms=NO_LORA, device=_absent_cuda()), "requested but"


# --------------------------------------------------------------------------------------------------------------------
# LoRA target modules


def case_train_unknown_target_module(d, m, existing):
    return ["train", "--model", m, *TRAIN, "--target-modules", "q_proj,nope"], "LoRA target module(s) 'nope' not found in model llama"


def case_train_target_module_not_adaptable(d, m, existing):
    return ["train", "--model", m, *TRAIN, "--target-modules", "input_layernorm"], "is a LlamaRMSNorm, which LoRA cannot adapt"


def case_job_unknown_target_module(d, m, existing):
    arms = {"prompting": {"shots": [0]}, "lora": {"train_sizes": [8], "max_steps": 1, "target_modules": ["nope"]}}
    return _run(d, m, arms=arms), "'nope' not found in model llama (LlamaForCausalLM)"


def case_job_reuses_truncated_adapter(d, m, existing):
    arms = {"prompting": {"shots": [0]}, "lora": {"train_sizes": [8], "max_steps": 1}}
    job = _job(d, m, arms=arms)
    res = CliRunner().invoke(app, ["train", "--job", str(job), "--model", m, "--task", "snips_intents", "--n", "8",
                                   "--adapters-dir", "adapters", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    (meta,) = list((d / "adapters").rglob("tunecheck-adapter.json"))
    _truncate(meta.parent / "adapter_model.safetensors")
    return ["run", str(job)], "adapter_model.safetensors is truncated or corrupt"


# found after the run started (the model or adapter has to be loaded first): progress lines may precede the error
MID_RUN = {
    "missing_layer_tensors", "missing_embeddings", "untied_head_missing", "unexpected_tensor", "fewer_layers_in_config",
    "qwen2_weights_under_llama_config", "llama_weights_under_qwen2_config", "wrong_hidden_size", "wrong_vocab_size",
    "tokenizer_with_added_tokens", "tokenizer_of_a_bigger_vocab", "job_absent_cuda", "job_unknown_target_module",
    "job_reuses_truncated_adapter",
}
CASES = cases(globals())
QWEN: list[str] = []  # the tiny qwen2 folder, set by the fixture below


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_llama_dir, tiny_qwen_dir) -> Path:
    QWEN[:] = [str(tiny_qwen_dir)]
    return make_finished_run(tmp_path_factory.mktemp("fin"), tiny_llama_dir)


def test_there_are_at_least_20_cases():
    assert len(CASES) >= 20 and MID_RUN <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_model_input_exits_2_with_one_line(name, tmp_path, tiny_llama_dir, finished, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check(name, CASES[name], tmp_path, str(tiny_llama_dir), finished, mid_run=name in MID_RUN)


def test_unknown_target_module_is_found_before_any_unit(tmp_path, tiny_llama_dir, finished, monkeypatch):
    """The target modules are checked right after the base is loaded: no unit of the new run is computed (not arm A
    first, then peft's error)."""
    monkeypatch.chdir(tmp_path)
    check("job_unknown_target_module", case_job_unknown_target_module, tmp_path, str(tiny_llama_dir), finished, mid_run=True)
    new_runs = [p for p in (tmp_path / "runs").iterdir() if p.name != "existing"]
    assert [u for r in new_runs for u in (r / "units").glob("*.json")] == []


# --------------------------------------------------------------------------------------------------------------------
# the checks themselves, without the CLI


def test_intact_models_load_strictly(tiny_llama_dir, tiny_gemma_dir, tiny_qwen_dir):
    from evaluator.models.load import load_model, resolve_source
    from evaluator.models.tokens import tokenizer_max_id

    for folder in (tiny_llama_dir, tiny_gemma_dir, tiny_qwen_dir):  # tied lm_head is not "missing"
        lm = load_model(resolve_source(str(folder)), device="cpu")
        # (the tiny qwen2 tokenizer adds a special unk at id 512 that byte-level BPE never emits: not counted)
        assert tokenizer_max_id(lm.tokenizer) < lm.model.get_input_embeddings().num_embeddings


def test_builtin_models_load_strictly():
    from evaluator.models import zoo
    from evaluator.models.load import load_model, resolve_source

    done = [n for n in zoo.BUILTIN if zoo.cached_path(n) is not None]
    if not done:
        pytest.skip("no converted built-in model in the cache")
    for name in done:
        load_model(resolve_source(name), device="cpu")  # raises on any missing / unexpected / reshaped tensor


def test_check_target_modules(tiny_llama_dir, tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    from evaluator.arms.lora import check_target_modules
    from evaluator.config.arms import LoraArm
    from evaluator.models.load import load_model, resolve_source

    lm = load_model(resolve_source(str(tiny_llama_dir)), device="cpu")
    for ok in (None, ["q_proj"], ["self_attn.v_proj", "down_proj"]):
        check_target_modules(lm, LoraArm(target_modules=ok))  # a LoadedModel ...
        check_target_modules(lm.model, LoraArm(target_modules=ok))  # ... or its torch model
    with pytest.raises(UserError, match=r"'nope', 'qproj' not found .* q_proj, k_proj, v_proj, o_proj"):
        check_target_modules(lm, LoraArm(target_modules=["q_proj", "nope", "qproj"]))
    gemma = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    check_target_modules(gemma, LoraArm())
    with pytest.raises(UserError, match="gemma3_text"):
        check_target_modules(gemma, LoraArm(target_modules=["c_attn"]))


def test_weights_checks_name_the_file(tmp_path, tiny_llama_dir):
    from evaluator.models.load import check_weight_files

    f = _copy(str(tiny_llama_dir), tmp_path)
    check_weight_files(f)
    _truncate(_weights(f), 0.99)  # even a few missing bytes at the end
    with pytest.raises(UserError, match=r"model\.safetensors is truncated or corrupt .* re-download or re-convert it"):
        check_weight_files(f)


# --------------------------------------------------------------------------------------------------------------------
# float16 training: loss scaling (bf16 and float32 unchanged)


def _examples(tiny_llama_dir, n=16):
    from transformers import AutoTokenizer

    from evaluator.training.data import Example

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    texts = [("Utterance: play some jazz\nIntent:", " play_music"), ("Utterance: will it rain\nIntent:", " get_weather")]
    exs = [Example(tok(c).input_ids, tok(a, add_special_tokens=False).input_ids) for c, a in texts * (n // 2)]
    return exs, tok.pad_token_id


@pytest.mark.parametrize("dtype,scaled", [(torch.float16, True), (torch.bfloat16, False), (torch.float32, False)])
def test_training_scales_the_loss_only_for_float16(dtype, scaled, tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from evaluator.config.arms import LoraArm
    from evaluator.training.loop import train_lora
    from evaluator.training.precision import mixed_precision_for

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=dtype)
    assert mixed_precision_for("cpu", dtype) == "no"
    if dtype == torch.float16:
        assert mixed_precision_for("cuda", dtype) == "no"  # no bf16 autocast over float16 weights
    exs, pad = _examples(tiny_llama_dir)
    hp = LoraArm(r=4, max_steps=3, batch_size=4, dropout=0.0, learning_rate=1e-2)
    pm, res = train_lora(model, exs, hp, tmp_path / "ad", seed=0, pad_id=pad, device="cpu")
    assert res.grad_scaler is scaled
    assert res.mixed_precision == ("fp16" if scaled else "no")
    assert (res.loss_scale is not None) is scaled and all(torch.isfinite(torch.tensor(res.loss_curve)))
    lora_b = [p for n, p in pm.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.dtype == torch.float32 for p in lora_b)  # trainable weights stay float32
    assert any(float(p.abs().sum()) > 0 for p in lora_b)  # B starts at zero: the scaled steps really updated it
    assert (tmp_path / "ad" / "adapter_model.safetensors").is_file()


def test_float16_without_a_scaler_is_refused_cleanly(monkeypatch):
    from evaluator.training import precision as training

    def no_scaler(*a, **k):
        raise RuntimeError("GradScaler is not supported on this device")

    monkeypatch.setattr(torch.amp, "GradScaler", no_scaler)
    with pytest.raises(UserError, match="float16 training needs a gradient scaler.*use dtype: float32 or bfloat16"):
        training.make_grad_scaler("cpu")


def test_train_command_float16_records_the_scaler(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--model", str(tiny_llama_dir), *TRAIN, "--dtype", "float16", "--device", "cpu",
                                   "--adapters-dir", str(tmp_path / "ad")])
    assert res.exit_code == 0, res.output
    (meta,) = list((tmp_path / "ad").rglob("tunecheck-adapter.json"))
    tr = json.loads(meta.read_text())["training"]
    assert tr["grad_scaler"] is True and tr["mixed_precision"] == "fp16"


def test_float16_overflowed_steps_are_skipped_not_applied(tmp_path, tiny_llama_dir, monkeypatch):
    """A scale so large that every float16 gradient overflows: the scaler skips those steps and halves the scale,
    so no inf/NaN ever reaches the adapter (without a scaler, fp16 gradients would silently underflow instead)."""
    from transformers import AutoModelForCausalLM

    from evaluator.config.arms import LoraArm
    from evaluator.training import loop as training
    from evaluator.training import precision

    monkeypatch.setattr(precision, "make_grad_scaler", lambda device: torch.amp.GradScaler("cpu", init_scale=2.0**40))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float16)
    exs, pad = _examples(tiny_llama_dir)
    hp = LoraArm(r=4, max_steps=3, batch_size=4, dropout=0.0)
    pm, res = training.train_lora(model, exs, hp, tmp_path / "ad", seed=0, pad_id=pad, device="cpu")
    assert res.grad_scaler and res.loss_scale == 2.0**37  # three overflowed steps, each halving the scale
    lora = [p for n, p in pm.named_parameters() if "lora_" in n]
    assert all(torch.isfinite(p).all() for p in lora)
    assert all(float(p.abs().sum()) == 0 for n, p in pm.named_parameters() if "lora_B" in n)  # nothing applied
