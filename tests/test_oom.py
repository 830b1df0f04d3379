"""Out of GPU memory: scoring halves the batch and retries the chunk, training halves the micro-batch and retries the
step (gradient accumulation keeps the global batch), both with the results of a run that never ran out; below the
smallest batch it is a one-line UserError (exit 2).

CPU only: the OOM is simulated. The LAST decoder layer raises `torch.cuda.OutOfMemoryError` whenever its forward
sees more than `limit` tokens (batch x length) — what too large a batch does on a GPU, and late in the forward, after
the first layer has already appended the new tokens to the shared prefix KV cache — or on chosen forward calls.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from evaluator.arms.evaluate import Unit, evaluate_unit
from evaluator.cli.app import app
from evaluator.config.arms import LoraArm
from evaluator.engine.memory import is_out_of_memory
from evaluator.engine.requests import ChoiceRequest
from evaluator.engine.scorer import PrefixScorer
from evaluator.errors import UserError
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.run_store import RunStore
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task
from evaluator.training.loop import train_lora
from tests.tiny_models import adapter_weights

N_ITEMS = 40  # three chunks of evaluate_unit (16, 16, 8)
SHOTS = 3


class SimulatedOOM:
    """Wraps a decoder layer's forward: out of memory above `limit` tokens (`rows`: rows) per forward, or on the
    (1-based) forward calls in `fail_calls`, once `armed`. `raised` counts the errors."""

    def __init__(self, layer, limit: int | None = None, fail_calls=(), armed: bool = True, error=torch.cuda.OutOfMemoryError,
                 rows: bool = False):
        self.limit, self.fail_calls, self.armed, self.error = limit, set(fail_calls), armed, error
        self.rows = rows
        self.calls = self.raised = 0
        orig = layer.forward

        @functools.wraps(orig)
        def forward(*args, **kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            n = h.shape[0] * (1 if self.rows else h.shape[1])
            if self.armed:
                self.calls += 1
                if (self.limit is not None and n > self.limit) or self.calls in self.fail_calls:
                    self.raised += 1
                    raise self.error(f"CUDA out of memory. Tried to allocate {n} MiB (simulated: {n} tokens)")
            return orig(*args, **kwargs)

        layer.forward = forward


def _model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def setup(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    task = load_task("snips_intents")
    tp = TokenizedPrompts(PromptBuilder(task, 7), tok)
    items = list(task.test[:N_ITEMS])
    prefix = len(tp.prefix_ids(SHOTS))
    request = [len(tp.item_ids(it, SHOTS)) + sum(len(tp.continuation_ids(c)) for c in it.choices) for it in items]
    row = [prefix + len(tp.item_ids(it, SHOTS)) + len(tp.continuation_ids(c)) for it in items for c in it.choices]
    sizes = {"prefix": prefix, "request": request, "row": row}
    return tok, task, tp, items, sizes


def _evaluate(tmp, model, setup, engine: str, name: str, **kw):
    tok, task, tp, items, _ = setup
    store = RunStore(tmp / name)
    unit = Unit("snips_intents", "A", "tiny", "tiny", SHOTS)
    rec = evaluate_unit(unit, task, items, tp, model, tok, 2048, store, engine=engine, batch_tokens=4096, shots_cap=8, **kw)
    rows = [json.loads(x) for x in store.results_path(unit.id).read_text().splitlines()]
    return rec, rows


_clean: dict = {}


@pytest.fixture
def clean(tmp_path_factory, tiny_llama_dir, setup):
    def get(engine: str):
        if engine not in _clean:
            _clean[engine] = _evaluate(tmp_path_factory.mktemp("clean"), _model(tiny_llama_dir), setup, engine, "clean")
        return _clean[engine]

    return get


def _same_rows(got: list[dict], ref: list[dict]) -> None:
    assert [r["item_id"] for r in got] == [r["item_id"] for r in ref]  # every item once, none lost or repeated
    assert [r["prediction"] for r in got] == [r["prediction"] for r in ref]
    assert [r["is_greedy"] for r in got] == [r["is_greedy"] for r in ref]
    worst = max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g["loglik"], r["loglik"]))
    assert worst <= 1e-5, worst


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_packed_scorer_recovers_its_prefix_cache_after_a_failed_forward(tiny_llama_dir, setup):
    """The OOM hits layer 2 after layer 1 appended the batch to the shared prefix cache: cropping by the batch length
    would cut layer 2's prefix. The next call must score exactly as a scorer that never failed."""
    tok, task, tp, items, _ = setup
    reqs = [ChoiceRequest(tp.item_ids(it, SHOTS), [tp.continuation_ids(c) for c in it.choices]) for it in items[:6]]
    prefix = tp.prefix_ids(SHOTS)
    ref = PrefixScorer(_model(tiny_llama_dir), prefix, mode="packed").score(reqs)
    model = _model(tiny_llama_dir)
    scorer = PrefixScorer(model, prefix, mode="packed")
    sim = SimulatedOOM(model.model.layers[-1], fail_calls={1})
    with pytest.raises(torch.cuda.OutOfMemoryError):
        scorer.score(reqs)
    got = scorer.score(reqs)
    assert sim.raised == 1 and scorer.last_batch == (6, sum(len(r.item_ids) + sum(map(len, r.choice_ids)) for r in reqs))
    assert max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g.loglik, r.loglik)) <= 1e-5


@pytest.mark.parametrize(
    "engine, error", [("packed", torch.cuda.OutOfMemoryError), ("plain", RuntimeError)], ids=["packed-cuda-oom", "plain-runtime-oom"]
)
def test_scoring_halves_the_batch_and_matches_a_run_without_oom(tmp_path, tiny_llama_dir, setup, clean, engine, error):
    _, _, _, _, sizes = setup
    ref_rec, ref_rows = clean(engine)
    assert ref_rec["oom_retries"] == 0 and ref_rec["batch_tokens_used"] == 4096
    # a batch of two of the largest requests (packed: and the prefix encoding) or rows (plain) fits; chunk 2 at the
    # full 4096 budget does not
    if engine == "packed":
        limit = max(sizes["prefix"], 2 * max(sizes["request"])) + 1
        assert limit < sum(sizes["request"][16:32]) < 4096
    else:
        limit = 2 * max(sizes["row"]) + 1
        assert limit < 4096 < sum(sizes["row"][16 * 7 : 32 * 7])
    model = _model(tiny_llama_dir)
    sim = SimulatedOOM(model.model.layers[-1], limit=limit, armed=False, error=error)
    logs: list[str] = []

    def progress(n: int) -> None:  # first chunk at the full budget, then the GPU "fills up"
        sim.armed = True

    rec, rows = _evaluate(tmp_path, model, setup, engine, "oom", log=logs.append, progress=progress)
    assert sim.raised >= 2 and rec["oom_retries"] == sim.raised and len(logs) == sim.raised
    assert all("out of GPU memory" in m and "retrying with batch_tokens" in m for m in logs)
    assert rec["batch_tokens_used"] < 4096 // 2
    assert rec["n_items"] == N_ITEMS and len(rows) == N_ITEMS
    _same_rows(rows, ref_rows)
    assert rec["value"] == ref_rec["value"] and rec["engine"] == engine


def test_scoring_oom_without_a_log_callback_warns_through_the_logger(tmp_path, tiny_llama_dir, setup, caplog):
    model = _model(tiny_llama_dir)
    sim = SimulatedOOM(model.model.layers[-1], fail_calls={3})  # call 1 encodes the prefix, call 2 the warm-up item
    with caplog.at_level("WARNING", logger="tunecheck"):
        rec, _ = _evaluate(tmp_path, model, setup, "packed", "oom")
    assert sim.raised == 1 and rec["oom_retries"] == 1
    assert [r.getMessage() for r in caplog.records if "out of GPU memory" in r.getMessage()]


def test_scoring_other_errors_are_not_retried(tmp_path, tiny_llama_dir, setup):
    model = _model(tiny_llama_dir)
    SimulatedOOM(model.model.layers[-1], fail_calls={3}, error=ValueError)
    with pytest.raises(ValueError):
        _evaluate(tmp_path, model, setup, "packed", "err")


def test_scoring_single_request_too_big_is_a_user_error(tmp_path, tiny_llama_dir, setup):
    _, _, _, _, sizes = setup
    model = _model(tiny_llama_dir)
    sim = SimulatedOOM(model.model.layers[-1], limit=min(sizes["row"]) - 1)  # not even one row fits
    store = RunStore(tmp_path / "floor")
    with pytest.raises(UserError) as err:
        _evaluate(tmp_path, model, setup, "plain", "floor")
    msg = str(err.value)
    assert "snips_intents__A__tiny__k3 ran out of GPU memory even at the smallest batch" in msg and "\n" not in msg
    assert "fewer shots" in msg and "dtype" in msg
    assert sim.raised > 1 and not store.is_done("snips_intents__A__tiny__k3")


def test_prefix_that_does_not_fit_is_a_user_error(tmp_path, tiny_llama_dir, setup):
    _, _, _, _, sizes = setup
    model = _model(tiny_llama_dir)
    sim = SimulatedOOM(model.model.layers[-1], limit=sizes["prefix"] - 1)
    with pytest.raises(UserError, match=rf"the {sizes['prefix']}-token shared prefix \(k=3\) alone does not fit"):
        _evaluate(tmp_path, model, setup, "packed", "prefix")
    assert sim.raised == 1  # no halving: there is no batch to make smaller


def test_cli_run_exits_2_when_even_one_request_does_not_fit(tmp_path, tiny_llama_dir, monkeypatch):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    def oom(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")

    monkeypatch.setattr(LlamaDecoderLayer, "forward", oom)
    job = {
        "name": "oom", "tasks": ["snips_intents"], "base": str(tiny_llama_dir), "newer": [], "seed": 7, "limit": 4,
        "engine": "plain", "device": "cpu",
        "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}},
        "output_dir": str(tmp_path / "runs"), "adapters_dir": str(tmp_path / "adapters"),
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "ran out of GPU memory even at the smallest batch" in res.output
    assert "Traceback" not in res.output


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from evaluator.arms.lora import build_examples

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    task = load_task("snips_intents")
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    return build_examples(task, tp, list(task.train[:48]), tok), tok


HP = LoraArm(r=4, max_steps=6, batch_size=8, learning_rate=1e-2, dropout=0, eval_every=3)


@pytest.mark.parametrize("shared", [False, True], ids=["whole-rows", "shared-prefix"])
def test_training_oom_halves_the_micro_batch_and_trains_the_same_adapter(tiny_llama_dir, examples, tmp_path, shared):
    from evaluator.training.data import shared_prefix_len

    exs, tok = examples
    hp = HP.model_copy(update={"shared_prefix": shared})
    _, ref = train_lora(_model(tiny_llama_dir), exs, hp, tmp_path / "clean", seed=5, pad_id=tok.pad_token_id, device="cpu")
    assert ref.oom_retries == 0 and ref.micro_batch_size == 8 and ref.n_val == 8

    model = _model(tiny_llama_dir)
    # 8 items per forward never fit, 4 do; the second half of step 2 (after the first half's backward) fails too:
    # its partial gradients must not leak into the retried step. With the shared prefix every micro-batch is two
    # forwards (its prefix on one row, then its rows after it): call 10 is step 2's second half's rows.
    assert (shared_prefix_len(exs) > 0) and ref.shared_prefix_tokens > 0 if shared else ref.shared_prefix_tokens == 0
    limit = 4 if shared else 4 * max(len(e) for e in exs)
    sim = SimulatedOOM(model.model.layers[-1], limit=limit, fail_calls={10 if shared else 5}, rows=shared)
    logs: list[str] = []
    _, res = train_lora(model, exs, hp, tmp_path / "oom", seed=5, pad_id=tok.pad_token_id, device="cpu", log=logs.append)
    assert sim.raised == 2 and res.oom_retries == 2 and res.micro_batch_size == 2
    assert len(logs) == 2 and "step 1: retrying with 4 items per forward" in logs[0] and "step 2: retrying with 2" in logs[1]
    assert res.as_dict()["oom_retries"] == 2  # recorded with the adapter's metadata
    assert res.steps == ref.steps == 6 and res.tokens_seen == ref.tokens_seen
    assert res.loss_curve == pytest.approx(ref.loss_curve, rel=1e-5)
    assert [v for _, v in res.val_curve] == pytest.approx([v for _, v in ref.val_curve], rel=1e-5)
    wa, wb = adapter_weights(tmp_path / "clean"), adapter_weights(tmp_path / "oom")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    assert any(float(w.abs().max()) > 0 for k, w in wb.items() if "lora_B" in k)  # it did train


def test_training_oom_at_one_item_per_forward_is_a_user_error(tiny_llama_dir, examples, tmp_path):
    exs, tok = examples
    model = _model(tiny_llama_dir)
    sim = SimulatedOOM(model.model.layers[-1], limit=min(len(e) for e in exs) - 1)
    logs: list[str] = []
    with pytest.raises(UserError) as err:
        train_lora(model, exs, HP, tmp_path / "floor", seed=5, pad_id=tok.pad_token_id, device="cpu", log=logs.append)
    msg = str(err.value)
    assert "ran out of GPU memory even with one item per forward" in msg and "gradient_checkpointing: true" in msg
    assert "shorter prompts" in msg and "\n" not in msg
    assert sim.raised == 4 and len(logs) == 3  # 8 -> 4 -> 2 -> 1 items, then give up
    assert not (tmp_path / "floor").exists()


def test_cli_train_exits_2_when_one_item_does_not_fit(tmp_path, tiny_llama_dir, monkeypatch):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    def oom(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")

    monkeypatch.setattr(LlamaDecoderLayer, "forward", oom)
    res = CliRunner().invoke(app, [
        "train", "--model", str(tiny_llama_dir), "--task", "snips_intents", "--n", "16", "--max-steps", "2",
        "--batch-size", "4", "--r", "4", "--device", "cpu", "--adapters-dir", str(tmp_path / "adapters"),
    ])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "LoRA training ran out of GPU memory even with one item per forward" in res.output
    assert "Traceback" not in res.output
