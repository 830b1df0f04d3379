"""Offline test fixtures: tiny random models and a tokenizer trained on the task text.

Everything here is built locally in a few seconds; no test touches the Hugging Face hub.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Isolate the hub before transformers/datasets are imported anywhere.
_HF_HOME = tempfile.mkdtemp(prefix="tunecheck-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = str(Path(_HF_HOME) / "datasets")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add overhead (and thrash on a shared 2-core box)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model training tests, restored afterwards (a test elsewhere may
    change it; two threads fighting for a shared 2-core box are far slower). Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

from tests.tiny_models import build_tiny_model, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("llama"), "llama", tiny_tokenizer_dir, seed=0)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("gemma"), "gemma3", tiny_tokenizer_dir, seed=1)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("qwen"), "qwen2", tiny_tokenizer_dir, seed=2)


@pytest.fixture(scope="module")
def snips():
    from evaluator.tasks.load import load_task

    return load_task("snips_intents")


@pytest.fixture(scope="module")
def examples(snips, tiny_tokenizer_dir):
    """The first 64 SNIPS training items as arm B trains them, on the tiny tokenizer: (examples, tokenizer)."""
    from transformers import AutoTokenizer

    from evaluator.arms.lora import build_examples
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tp = TokenizedPrompts(PromptBuilder(snips, 0), tok)
    assert tok.pad_token_id == 0  # tests that build batches by hand pad with 0
    return build_examples(snips, tp, list(snips.train[:64]), tok), tok
