"""The text of a prompt, lm-eval's layout: instruction, k demonstrations (query + target delimiter + answer, joined by
the few-shot delimiter) and the item's query. `PromptBuilder` is text only; `prompts/` turns it into token ids."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from evaluator.errors import UserError
from evaluator.tasks.spec import Item, Task
from evaluator.tasks.templates import _template, find_prompt, render_query


@dataclass(frozen=True)
class PromptBuilder:
    """Texts of one (task, seed). The prefix of each k is rendered once: every item's ids start with the prefix's
    trailing whitespace, so without the memo each item would re-render all k demonstrations (at k=256 that was
    0.6 s per 100 items, more than scoring them on a GPU). Item queries come from `task.rendered` (filled when the
    task was loaded), so no item is rendered twice."""

    task: Task
    seed: int
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _tmpl(self):
        if "template" not in self._memo:
            path = find_prompt(self.task)
            self._memo["template"] = (_template(path), path)
        return self._memo["template"]

    def query(self, item: Item) -> str:
        if self.task.spec.prerendered:
            return item.input
        cached = self.task.rendered.get(item)
        if cached is not None:
            return cached
        template, path = self._tmpl()
        out = render_query(template, path, self.task, item)
        self.task.rendered[item] = out
        return out

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
            demos = "".join(self.query(d) + self.continuation(d.target) + s.fewshot_delimiter for d in self.demos(k))
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
        """What identifies the prompt format (part of an adapter's key): the zero-shot layout around a placeholder,
        and the `labels` verbaliser when there is one (LoRA trains on its words)."""
        words = self.task.spec.labels
        tail = "" if words is None else f"<labels:{sorted(words.items())!r}>"
        if self.task.spec.prerendered:
            return self.prefix(0) + f"<lm-eval:{self.task.spec.lmeval_task} doc_to_text>" + tail
        template, path = self._tmpl()
        try:
            return self.prefix(0) + template.render(input="{input}", id="x", choices=[]) + tail
        except Exception:  # noqa: BLE001 - a template that needs real choices (e.g. `choices[0]`): the first item's, as placeholder
            sample = next(iter(self.task.test or self.task.train), None)
            choices = list(sample.choices) if sample is not None else []
            return self.prefix(0) + render_query(template, path, self.task, Item("x", "{input}", "", tuple(choices))) + tail

    def verbalise(self, label: str) -> str:
        """The word a label is shown and scored as: the task's `labels` verbaliser, else the label itself. A label
        the verbaliser does not map (per-row choices, checked here rather than on load) is one UserError line."""
        words = self.task.spec.labels
        if words is None:
            return label
        if label not in words:
            raise UserError(f"task {self.task.name}: label {label!r} has no word in `labels` ({', '.join(words)}) — "
                            "map every choice")
        return words[label]

    def continuation(self, text: str) -> str:
        """target_delimiter + the word `text` (a label or a target) is scored as (see `verbalise`)."""
        return self.task.spec.target_delimiter + self.verbalise(text)
