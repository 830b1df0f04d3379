"""Prompts: the shared demonstration prefix and each item's query, as text and as token ids.

Layout (the same as lm-eval's, so the two agree):
    prefix  = instruction + instruction_delimiter (if any; default fewshot_delimiter)
              + k × (query(demo) + target_delimiter + target(demo) + fewshot_delimiter)
    request = prefix + query(item)
    choice  = target_delimiter + choice text
Token ids are built piecewise — prefix ids (with the tokenizer's special tokens, e.g. BOS) + item ids + choice ids
(no special tokens) — so that one prefix KV cache serves every item. The cut is placed *before* the prefix's trailing
whitespace, usually the delimiter (the shared ids end with the last demonstration's answer; each item's ids start with
the delimiter): byte-level BPE
pre-tokenisers split a whitespace run differently at the end of a string than before a word ("\n\n" alone is one
token, "\n\nUtterance" is "\n" + "\nUtterance"), so cutting after the delimiter would give other ids than the
whole prompt; cutting between an answer and whitespace gives the same ids as tokenising the whole prompt. Demonstrations are ONE fixed order
of the train split — a seeded permutation (`demonstrations: seeded`, the default) or file order (`first_n`); k shots
take its first k (so k=5 ⊂ k=32).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from evaluator.errors import UserError
from evaluator.tasks import Item, Task

REPO_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


@lru_cache(maxsize=32)
def _template(path: Path):
    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    try:
        return env.from_string(path.read_text(encoding="utf-8"))
    except TemplateError as exc:
        raise UserError(f"prompt template {path}: {exc}") from None


def find_prompt(task: Task) -> Path:
    name = task.spec.prompt
    if "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"task {task.name}: prompt {name!r} must be a file name in prompts/, not a path")
    for d in (task.path.parent / "prompts", task.path.parent.parent / "prompts", Path.cwd() / "prompts", REPO_PROMPTS):
        if (d / name).is_file():
            return d / name
    raise UserError(f"task {task.name}: prompt template {name!r} not found in prompts/ — add it or fix `prompt`")


@dataclass(frozen=True)
class PromptBuilder:
    """Texts of one (task, seed). The prefix of each k is rendered once: every item's ids start with the prefix's
    trailing whitespace, so without the memo each item would re-render all k demonstrations (at k=256 that was
    0.6 s per 100 items, more than scoring them on a GPU)."""

    task: Task
    seed: int
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def query(self, item: Item) -> str:
        if self.task.spec.prerendered:
            return item.input
        if "template" not in self._memo:
            self._memo["template"] = _template(find_prompt(self.task))
        try:
            return self._memo["template"].render(input=item.input, id=item.id, choices=list(item.choices))
        except TemplateError as exc:
            raise UserError(f"task {self.task.name}: prompt template failed on item {item.id}: {exc}") from None

    def demos(self, k: int) -> list[Item]:
        """The k demonstrations, in prefix order, by the task's `demonstrations` setting: `seeded` (default) = the
        first k of ONE permutation of the training items by `seed` (so k=5 ⊂ k=32, the same for every item);
        `first_n` = the first k in file order (lm-eval's `first_n` sampler; for an lm-eval task, of its few-shot docs)."""
        if "order" not in self._memo:
            order = list(self.task.demo_pool)
            if self.task.spec.demonstrations != "first_n":
                random.Random(self.seed).shuffle(order)
            self._memo["order"] = order
        order = self._memo["order"]
        if k > len(order) and self.task.fewshot is not None:  # callers check k against the training items only
            raise UserError(f"task {self.task.name}: shots={k} but its few-shot docs are only {len(order)} — lower shots")
        return order[:k]

    def head(self) -> str:
        """The instruction and what separates it from the first demonstration or query ("" without one)."""
        s = self.task.spec
        if not s.instruction:
            return ""
        return s.instruction + (s.fewshot_delimiter if s.instruction_delimiter is None else s.instruction_delimiter)

    def prefix(self, k: int) -> str:
        """Everything before an item's query: head + k × (query + target_delimiter + answer + fewshot_delimiter)."""
        key = ("prefix", k)
        if key not in self._memo:
            s = self.task.spec
            demos = "".join(self.query(d) + s.target_delimiter + d.target + s.fewshot_delimiter for d in self.demos(k))
            self._memo[key] = self.head() + demos
        return self._memo[key]

    def prefix_core(self, k: int) -> str:
        """The prefix up to its trailing whitespace: where the shared token ids end (see the module docstring)."""
        return self.prefix(k).rstrip()

    def joiner(self, k: int) -> str:
        """The prefix's trailing whitespace (usually the delimiter), tokenised with each item's query."""
        full = self.prefix(k)
        return full[len(full.rstrip()) :]

    def signature(self) -> str:
        """What identifies the prompt format (part of an adapter's key): the zero-shot layout around a placeholder."""
        if self.task.spec.prerendered:
            return self.prefix(0) + f"<lm-eval:{self.task.spec.lmeval_task} doc_to_text>"
        return self.prefix(0) + self.query(Item("x", "{input}", ""))

    def continuation(self, text: str) -> str:
        return self.task.spec.target_delimiter + text


@dataclass
class TokenizedPrompts:
    """Token ids for one (task, tokenizer): the prefix for any k, each item's query and choices."""

    builder: PromptBuilder
    tokenizer: object
    _prefix_ids: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def prefix_ids(self, k: int) -> list[int]:
        if k not in self._prefix_ids:  # a 256-shot prefix is ~7k tokens: tokenised once per k, not per call
            self._prefix_ids[k] = list(self.tokenizer(self.builder.prefix_core(k), add_special_tokens=True)["input_ids"])
        return list(self._prefix_ids[k])

    def item_ids(self, item: Item, k: int) -> list[int]:
        return list(self.tokenizer(self.builder.joiner(k) + self.builder.query(item), add_special_tokens=False)["input_ids"])

    def continuation_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(self.builder.continuation(text), add_special_tokens=False)["input_ids"])

    def longest_request(self, items: list[Item] | tuple[Item, ...], k: int = 1) -> int:
        """Tokens of the longest item (with its delimiter) + its longest answer: what must fit after the prefix."""
        worst = 0
        for it in items:
            answers = list(it.choices) or [it.target]
            extra = max(len(self.continuation_ids(a)) for a in answers)
            if self.builder.task.spec.kind == "generate":
                extra = max(extra, self.builder.task.spec.max_new_tokens)
            worst = max(worst, len(self.item_ids(it, k)) + extra)
        return worst

    def max_shots_that_fit(self, context: int, items, cap: int) -> int:
        """Largest k (≤ cap, ≤ train size) with len(prefix(k)) + longest request ≤ context, by token count."""
        room = context - self.longest_request(items)
        lo, hi = 0, min(cap, len(self.builder.task.demo_pool))
        if len(self.prefix_ids(0)) > room:
            return -1
        while lo < hi:  # prefix length is monotonic in k
            mid = (lo + hi + 1) // 2
            if len(self.prefix_ids(mid)) <= room:
                lo = mid
            else:
                hi = mid - 1
        return lo
