"""The text of a prompt, lm-eval's layout: instruction, k demonstrations (query + target delimiter + answer, joined by
the few-shot delimiter) and the item's query. `PromptBuilder` is text only; `prompts/` turns it into token ids.

Chat format (`prompt_format: chat`, lm-eval's apply_chat_template): the same pieces become messages rendered by the
model's chat template (a callable handed in as `chat`, see `evaluator.prompts.chat`) — the system turn (`system`
+ fewshot_delimiter + instruction, lm-eval's system_instruction + description), each demonstration as a user turn
(its query) and an assistant turn (its answer; `fewshot_as_multiturn: false`: all of them and the query in one user
turn, laid out as the raw text), then the item's query as the last user turn with the generation prompt. The answer
is the assistant's reply with no target delimiter (lm-eval's construct_requests). The shared prefix is the rendered
text up to where the last user turn's content starts (found with a placeholder), the query is that content plus the
template's tail (end of turn, generation prompt), identical for every item; `check_chat` confirms, on the items the
tokenisation check samples, that prefix + query is what the template renders for the whole conversation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

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
    # The model's chat template, messages → text (evaluator.prompts.chat.chat_builder binds it for chat tasks);
    # None: raw text. A chat task without one refuses to lay out prompts rather than fall back to raw text silently.
    chat: Callable[[list[dict[str, str]]], str] | None = field(default=None, compare=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _tmpl(self):
        if "template" not in self._memo:
            path = find_prompt(self.task)
            self._memo["template"] = (_template(path), path)
        return self._memo["template"]

    @property
    def is_chat(self) -> bool:
        """Whether prompts are chat-rendered; a chat task with no template bound is one UserError line."""
        if self.task.spec.prompt_format != "chat":
            return False
        if self.chat is None:
            raise UserError(f"task {self.task.name} is chat-formatted (prompt_format: chat): its prompts need the "
                            "model's chat template — build them with evaluator.prompts.chat.chat_builder")
        return True

    def query(self, item: Item) -> str:
        """What follows `prefix(k)` for this item: its query text (raw), or (chat) its user turn's content and the
        template's tail — end of turn and generation prompt."""
        if self.is_chat:
            return self.user_text(item) + self._chat_split(0)[1]
        return self.user_text(item)

    def user_text(self, item: Item) -> str:
        """The item's query as its template (or lm-eval's doc_to_text) renders it: the raw prompt's query, the chat
        prompt's user content."""
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
        """Everything before an item's query: head + k × (query + target_delimiter + answer + fewshot_delimiter); chat:
        the rendered conversation up to the last user turn's content."""
        if self.is_chat:
            return self._chat_split(k)[0]
        key = ("prefix", k)
        if key not in self._memo:
            s = self.task.spec
            demos = "".join(self.query(d) + self.continuation(d.target) + s.fewshot_delimiter for d in self.demos(k))
            self._memo[key] = self.head() + demos
        return self._memo[key]

    # --- chat format ------------------------------------------------------------------------------------------------

    _SLOT = "\x00tunecheck-query\x00"  # stands for the last user turn's content when the shared prefix is rendered

    def system_text(self) -> str:
        """The chat system turn: `system` + fewshot_delimiter + instruction, lm-eval's maybe_delimit (no delimiter
        where either side has whitespace at the join); "" for none."""
        s = self.task.spec
        system, instruction = s.system or "", s.instruction
        if not system or not instruction:
            return system or instruction
        if system[-1].isspace() or instruction[0].isspace():
            return system + instruction
        return system + s.fewshot_delimiter + instruction

    def messages(self, k: int, content: str) -> list[dict[str, str]]:
        """The conversation lm-eval's fewshot_context builds: system turn, k demonstrations, the last user turn."""
        s = self.task.spec
        system = self.system_text()
        msgs = [{"role": "system", "content": system}] if system else []
        demos = self.demos(k)
        if s.fewshot_as_multiturn:
            for d in demos:
                msgs += [{"role": "user", "content": self.user_text(d)},
                         {"role": "assistant", "content": self.verbalise(d.target)}]
        else:  # lm-eval's multiturn_to_singleturn: the raw layout's demonstrations in front of the query
            content = "".join(self.user_text(d) + s.target_delimiter + self.verbalise(d.target) + s.fewshot_delimiter
                              for d in demos) + content
        return msgs + [{"role": "user", "content": content}]

    def _chat_split(self, k: int) -> tuple[str, str]:
        """(prefix, tail): the conversation of k demonstrations rendered around a placeholder content. The tail must
        not depend on k (every item's query is its content + the tail)."""
        key = ("chat", k)
        if key not in self._memo:
            text = self.chat(self.messages(k, self._SLOT))
            if text.count(self._SLOT) != 1:
                raise UserError(f"task {self.task.name}: the chat template does not render the last user turn's content "
                                "verbatim once — its prompts cannot be laid out; use prompt_format: raw")
            head, tail = text.split(self._SLOT)
            if k and tail != self._chat_split(0)[1]:
                raise UserError(f"task {self.task.name}: the chat template ends the last turn differently after {k} "
                                f"demonstrations ({tail[-40:]!r} vs {self._chat_split(0)[1][-40:]!r}) — use prompt_format: raw")
            self._memo[key] = (head, tail)
        return self._memo[key]

    def chat_context(self, item: Item, k: int) -> str:
        """The whole conversation for `item` at k shots, rendered at once (what lm-eval scores after)."""
        return self.chat(self.messages(k, self.user_text(item)))

    def check_chat(self, item: Item, k: int) -> None:
        """prefix(k) + query(item) must be the template's rendering of the whole conversation: a template that
        alters a message's content (e.g. trims it) or renders turns by what follows them cannot share a prefix."""
        if not self.is_chat:
            return
        whole, ours = self.chat_context(item, k), self.prefix(k) + self.query(item)
        if whole != ours:
            at = next((i for i, (a, b) in enumerate(zip(whole, ours)) if a != b), min(len(whole), len(ours)))
            raise UserError(f"task {self.task.name}: item {item.id} at k={k}: the chat template renders the "
                            f"conversation as {whole[max(0, at - 20):at + 20]!r}, not {ours[max(0, at - 20):at + 20]!r} "
                            "(it changes a message's text?) — the demonstrations cannot be a shared prefix; use "
                            "prompt_format: raw")

    @property
    def answer_lead(self) -> str:
        """Whitespace ending the query that is scored with the answer: chat choice tasks end in the generation prompt
        (e.g. "assistant\\n"), and lm-eval moves a context's trailing whitespace into the continuation, so its "\\n"
        is the first scored token; "" otherwise (raw queries end without whitespace; generation starts after it)."""
        if not self.is_chat or self.task.spec.kind != "choice":
            return ""
        tail = self._chat_split(0)[1]
        return tail[len(tail.rstrip()):]

    @property
    def scored_delimiter(self) -> str:
        """The text scored (and trained on) before an answer's word: target_delimiter, or (chat) `answer_lead`."""
        return self.answer_lead if self.is_chat else self.task.spec.target_delimiter

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
        head = self.prefix(0)
        if self.is_chat:  # LoRA trains on the zero-shot chat prompt: the rendered system turn, markup and tail
            head, tail = "<chat>" + head, self._chat_split(0)[1] + tail
        if self.task.spec.prerendered:
            return head + f"<lm-eval:{self.task.spec.lmeval_task} doc_to_text>" + tail
        template, path = self._tmpl()
        try:
            return head + template.render(input="{input}", id="x", choices=[]) + tail
        except Exception:  # noqa: BLE001 - a template that needs real choices (e.g. `choices[0]`): the first item's, as placeholder
            sample = next(iter(self.task.test or self.task.train), None)
            choices = list(sample.choices) if sample is not None else []
            return head + render_query(template, path, self.task, Item("x", "{input}", "", tuple(choices))) + tail

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
        """target_delimiter + the word `text` (a label or a target) is scored as (see `verbalise`); chat: the word
        alone, the assistant's reply (lm-eval drops the target delimiter under a chat template)."""
        if self.is_chat:
            return self.verbalise(text)
        return self.task.spec.target_delimiter + self.verbalise(text)
