"""Prompts as token ids: the shared demonstration prefix, each item's query and each answer choice, tokenised so
that one prefix KV cache serves every item. The text comes from :class:`evaluator.tasks.layout.PromptBuilder`.

Layout (the same as lm-eval's, so the two agree):
    prefix  = instruction + instruction_delimiter (if any; default fewshot_delimiter)
              + k × (query(demo) + target_delimiter + target(demo) + fewshot_delimiter)
    request = prefix + query(item)
    choice  = target_delimiter + choice text
Chat-formatted tasks (`prompt_format: chat`) take the same pieces from the chat-rendered text (the builder is bound to
the tokenizer's chat template, `evaluator.prompts.chat`): the query ends in the generation prompt, and its trailing
whitespace (`PromptBuilder.answer_lead`) is tokenised with each choice, as lm-eval's encode_pair moves it; a rendered
prompt that starts with the BOS text is tokenised without adding another (lm-eval's tok_encode).
Token ids are built piecewise — prefix ids (with the tokenizer's special tokens, e.g. BOS) + item ids + choice ids
(no special tokens) — so that one prefix KV cache serves every item. The cut is placed *before* the prefix's trailing
whitespace, usually the delimiter (the shared ids end with the last demonstration's answer; each item's ids start with
the delimiter): byte-level BPE
pre-tokenisers split a whitespace run differently at the end of a string than before a word ("\n\n" alone is one
token, "\n\nUtterance" is "\n" + "\nUtterance"), so cutting after the delimiter would give other ids than the
whole prompt; cutting between an answer and whitespace gives the same ids as tokenising the whole prompt. Demonstrations are ONE fixed order
of the train split — a seeded permutation (`demonstrations: seeded`, the default) or file order (`first_n`); k shots
take its first k (so k=5 ⊂ k=32).

Piecewise ids equal the whole prompt's ids for byte-level BPE tokenizers (SmolLM2, Gemma 3, Qwen), but not for
SentencePiece tokenizers that add a dummy prefix ("▁") to every string they are given (Llama-2, Mistral v0.1): the
item's and the choice's pieces would each start with a spurious "▁". So `TokenizedPrompts` checks, on the first test
items at k=0 and at a k>0 (and at every k it is asked for), that piecewise ids equal the ids of the whole string
tokenised at once; on a mismatch it switches to "whole" mode: the shared prefix ids stay exactly as they were (one
prefix KV cache still serves every item), an item's ids are the tail of its context (prefix + query) tokenised whole
after the prefix tokens, and a choice's ids are the tail of context + choice tokenised whole after the context's
tokens — lm-eval's split of context and continuation. What was found is `TokenizedPrompts.tokenisation`.

The prompt template is rendered on every training and test item when a task is loaded (`check_prompt`, called by
`evaluator.tasks.load.load_task`, in `evaluator.tasks.templates`), so a template that fails — a syntax error, an undefined variable, `{{ 1 / 0 }}`, a
sandbox violation — is one line naming the template, the item and the error, before any model loads; the rendered
queries are kept on the task and never rendered twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.spec import Item

CHECK_ITEMS = 8  # test items whose piecewise ids are compared with whole-string ids, at each k checked
CHECK_SHOTS = 2  # the k > 0 always checked (besides k = 0 and every k asked for)
ANCHOR_CHARS = 512  # whole mode: characters of the prefix tokenised in front of an item (left context of its ids)
log = logging.getLogger("tunecheck")


@dataclass
class TokenizedPrompts:
    """Token ids for one (task, tokenizer): the prefix for any k, each item's query and choices.

    Mode "piecewise" (prefix, item and choice tokenised separately) when that equals tokenising the whole prompt on
    the checked items, else "whole" (see the module docstring). `tokenisation` is what was checked and found, for the
    unit record. In whole mode a choice's ids depend on the item: pass `item` and `k` to `continuation_ids`."""

    builder: PromptBuilder
    tokenizer: object
    check_items: int = CHECK_ITEMS
    _prefix_ids: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _mode: str = field(default="piecewise", init=False, repr=False, compare=False)
    _checked: set = field(default_factory=set, init=False, repr=False, compare=False)
    _ctx: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _stats: dict = field(default_factory=lambda: {
        "items": set(), "comparisons": 0, "mismatches": 0, "residual": 0, "merges": set(), "first": None, "switched_at_k": None,
    }, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from evaluator.prompts.chat import chat_builder

        self.builder = chat_builder(self.builder, self.tokenizer)  # a chat task: its prompts are the template's text

    # --- plain tokenisation ---------------------------------------------------------------------------------------

    def _special(self, text: str, special: bool) -> bool:
        """Whether to add special tokens: not when a chat-rendered text already starts with the BOS text (lm-eval's
        has_bos_prefix with its prefix token, BOS else EOS), so the BOS is not doubled."""
        if not special or not self.builder.is_chat:
            return special
        tok = self.tokenizer
        bos = tok.bos_token_id if getattr(tok, "bos_token_id", None) is not None else getattr(tok, "eos_token_id", None)
        return bos is None or not text.startswith(tok.decode(bos))

    def _tok(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=self._special(text, special))["input_ids"])

    def _query(self, item: Item) -> str:
        """The item's query without `answer_lead` (that whitespace is tokenised with the answer)."""
        q, lead = self.builder.query(item), self.builder.answer_lead
        return q[: len(q) - len(lead)] if lead and q.endswith(lead) else q

    def _prefix(self, k: int) -> list[int]:
        if k not in self._prefix_ids:  # a 256-shot prefix is ~7k tokens: tokenised once per k, not per call
            self._prefix_ids[k] = self._tok(self.builder.prefix_core(k), True)
        return self._prefix_ids[k]

    def _piece_item(self, item: Item, k: int) -> list[int]:
        return self._tok(self.builder.joiner(k) + self._query(item), False)

    def _piece_cont(self, text: str) -> list[int]:
        return self._tok(self.builder.answer_lead + self.builder.continuation(text), False)

    # --- whole mode -----------------------------------------------------------------------------------------------

    def _anchor(self, k: int) -> tuple[str, list[int], bool]:
        """The left context an item is tokenised after: the whole prefix core (with special tokens) when short, else
        its last ANCHOR_CHARS characters (tokenised without them; the tokens of the context's tail do not depend on
        text that far back). Returns (text, its ids, whether special tokens are added)."""
        core = self.builder.prefix_core(k)
        if len(core) <= ANCHOR_CHARS:
            return core, self._prefix(k), True
        key = ("anchor", k)
        if key not in self._ctx:
            tail = core[-ANCHOR_CHARS:]
            self._ctx[key] = (tail, self._tok(tail, False))
        tail, ids = self._ctx[key]
        return tail, ids, False

    def _whole_context(self, item: Item, k: int) -> tuple[list[int], list[int]]:
        """(item ids, the context's ids from the anchor on) for whole mode."""
        key = ("ctx", item, k)
        if key not in self._ctx:
            anchor, a_ids, special = self._anchor(k)
            ctx = self._tok(anchor + self.builder.joiner(k) + self._query(item), special)
            if ctx[: len(a_ids)] != a_ids:  # the item's first token merges with the prefix's last: no clean cut
                self._stats["merges"].add(item.id)
            self._ctx[key] = (ctx[len(a_ids):], ctx)
        return self._ctx[key]

    def _whole_cont(self, text: str, item: Item, k: int) -> list[int]:
        key = ("cont", item, k, text)
        if key not in self._ctx:
            anchor, _, special = self._anchor(k)
            _, ctx = self._whole_context(item, k)
            whole = self._tok(anchor + self.builder.joiner(k) + self.builder.query(item) + self.builder.continuation(text), special)
            tail = whole[len(ctx):]  # lm-eval: continuation = whole[len(context ids):]
            self._ctx[key] = tail if tail else self._piece_cont(text)
        return self._ctx[key]

    # --- the check ------------------------------------------------------------------------------------------------

    def _sample(self) -> list[Item]:
        items = list(self.builder.task.test[: self.check_items])
        return items or list(self.builder.task.train[: self.check_items])

    def _ids(self, item: Item, k: int, answer: str) -> list[int]:
        if self._mode == "whole":
            return self._prefix(k) + self._whole_context(item, k)[0] + self._whole_cont(answer, item, k)
        return self._prefix(k) + self._piece_item(item, k) + self._piece_cont(answer)

    def _compare(self, k: int) -> int:
        """Mismatches of the current mode's ids against the whole string tokenised at once, on the sample at k."""
        bad = 0
        b = self.builder
        for it in self._sample():
            b.check_chat(it, k)  # chat: prefix + query is the template's rendering of the whole conversation
            answers = list(it.choices) or [it.target]
            head = b.prefix(k) + b.query(it)
            wholes = self.tokenizer([head + b.continuation(a) for a in answers],
                                    add_special_tokens=self._special(head, True))["input_ids"]
            for answer, whole in zip(answers, wholes):
                if self._ids(it, k, answer) != list(whole):
                    bad += 1
                    if self._stats["first"] is None:
                        self._stats["first"] = f"item {it.id} at k={k}, answer {answer!r}"
                self._stats["items"].add(it.id)
                self._stats["comparisons"] += 1
        return bad

    def _check(self, k: int | None) -> None:
        pool = len(self.builder.task.demo_pool)
        todo = [] if self._checked else [0, min(CHECK_SHOTS, pool)]
        if k is not None:
            todo.append(k)
        for kk in dict.fromkeys(todo):
            if kk in self._checked or kk > pool:
                continue
            self._checked.add(kk)
            if self._mode == "piecewise":
                bad = self._compare(kk)
                self._stats["mismatches"] += bad
                if bad:
                    self._mode = "whole"
                    self._stats["switched_at_k"] = kk
                    self._stats["residual"] += self._compare(kk)
                    log.warning(
                        f"task {self.builder.task.name}: this tokenizer gives other ids for prompt pieces than for the "
                        f"whole prompt ({self._stats['first']}); tokenising each prompt whole (shared prefix kept)"
                    )
            else:
                self._stats["residual"] += self._compare(kk)

    @property
    def mode(self) -> str:
        self._check(None)
        return self._mode

    @property
    def tokenisation(self) -> dict:
        """For the unit record: mode ("piecewise" | "whole"), items and comparisons checked, piecewise mismatches,
        mismatches left in the mode used (0 = the ids are the whole prompt's), items whose first token merges across
        the shared prefix's end (whole mode: those items' ids cannot share the prefix exactly), and a note."""
        self._check(None)
        st = self._stats
        note = "piecewise ids equal whole-prompt ids on every checked item"
        if self._mode == "whole":
            note = (f"piecewise ids differ from whole-prompt ids ({st['first']}): each prompt tokenised whole, split "
                    "after the shared prefix ids and before the answer (lm-eval's context/continuation split)")
            if st["merges"]:
                note += (f"; for {len(st['merges'])} item(s) the first token merges across the shared prefix's end, so "
                         "their ids differ from the whole prompt's at that one boundary")
            elif st["residual"]:
                note += f"; {st['residual']} checked prompt(s) still differ from whole-prompt ids"
        return {
            "mode": self._mode,
            "items_checked": len(st["items"]),
            "comparisons": st["comparisons"],
            "shots_checked": sorted(self._checked),
            "mismatches": st["mismatches"],
            "residual_mismatches": st["residual"],
            "prefix_boundary_merges": len(st["merges"]),
            "note": note,
        }

    # --- the ids --------------------------------------------------------------------------------------------------

    def prefix_ids(self, k: int) -> list[int]:
        """The shared prefix ids of k shots (the same in both modes)."""
        return list(self._prefix(k))

    def item_ids(self, item: Item, k: int) -> list[int]:
        self._check(k)
        if self._mode == "whole":
            return list(self._whole_context(item, k)[0])
        return self._piece_item(item, k)

    def continuation_ids(self, text: str, item: Item | None = None, k: int = 0) -> list[int]:
        """The ids of target_delimiter + text (verbalised: `PromptBuilder.continuation`, so pass the label, not its
        word) after the item's query at k shots. Piecewise mode: independent of the
        item. Whole mode: the tail of (context + continuation) after the context's ids; without `item`, the first
        test item at k=0 stands in as context (pass the item for exact ids)."""
        self._check(k if item is not None else None)
        if self._mode != "whole":
            return self._piece_cont(text)
        if item is None:
            sample = self._sample()
            if not sample:
                return self._piece_cont(text)
            item, k = sample[0], 0
        return list(self._whole_cont(text, item, k))

    def longest_request(self, items: list[Item] | tuple[Item, ...], k: int = 1) -> int:
        """Tokens of the longest item (with its delimiter) + its longest answer: what must fit after the prefix."""
        worst = 0
        for it in items:
            answers = list(it.choices) or [it.target]
            extra = max(len(self.continuation_ids(a, it, k)) for a in answers)
            if self.builder.task.spec.kind == "generate":
                extra = max(extra, self.builder.task.spec.max_new_tokens)
            worst = max(worst, len(self.item_ids(it, k)) + extra)
        return worst

    def _largest_fitting(self, room: int, lo: int, hi: int) -> int:
        """Largest k in [lo, hi] with len(prefix(k)) <= room, given that prefix(lo) fits (prefix length is monotonic
        in k)."""
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self.prefix_ids(mid)) <= room:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def max_shots_that_fit(self, context: int, items, cap: int) -> int:
        """Largest k (≤ cap, ≤ train size) with len(prefix(k)) + longest request ≤ context, by token count."""
        room = context - self.longest_request(items)
        if len(self.prefix_ids(0)) > room:
            return -1
        return self._largest_fitting(room, 0, min(cap, len(self.builder.task.demo_pool)))

    def max_shots_limits(self, context: int, items, cap: int) -> dict:
        """What bounds `max`: {"k": the k used (as `max_shots_that_fit`), "k_context": the largest k the context
        alone allows (searched past the cap, up to the demonstration pool), "cap", "pool", "binding": "context" |
        "max_shots" | "demonstrations"}. k = min(k_context, cap); binding is the limit that stops k: the context when
        it fits fewer than both the cap and the pool (or exactly the cap, so a higher cap would not help), else the
        cap when it is below the pool, else the pool. k = -1 (and k_context -1): not even k=0 fits.

        Beyond the cap the search gallops (2×cap, 4×cap, …) before bisecting, so it tokenises prefixes of at most
        about twice the context's length, not the whole pool."""
        pool = len(self.builder.task.demo_pool)
        k = self.max_shots_that_fit(context, items, cap)
        if k < 0:
            return {"k": -1, "k_context": -1, "cap": cap, "pool": pool, "binding": "context"}
        top = min(cap, pool)
        if k < top:  # the context stopped it below the cap and the pool
            k_context = k
        else:
            room = context - self.longest_request(items)
            lo, step = k, max(1, k)
            while lo < pool:
                probe = min(pool, lo + step)
                if len(self.prefix_ids(probe)) > room:
                    k_context = self._largest_fitting(room, lo, probe - 1)
                    break
                lo, step = probe, step * 2
            else:
                k_context = pool
        if k_context < pool and k_context <= cap:
            binding = "context"
        elif cap < pool:
            binding = "max_shots"
        else:
            binding = "demonstrations"
        return {"k": k, "k_context": k_context, "cap": cap, "pool": pool, "binding": binding}
