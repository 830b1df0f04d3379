"""A unit on an API model: the same prompts (the same prefix of k demonstrations + the item's query, as text) sent to
an OpenAI-compatible endpoint, one stored row per item as it is answered, and a unit record like every arm's — plus
what the API measured: its scoring method, usage tokens from the responses, latency per request, retries and errors.

How an item is scored (one method per unit, chosen on its first item and recorded; a resumed unit keeps the method
its stored rows were scored by, so two methods are never mixed in a unit):
- generate tasks: `generate` — greedy answer (temperature 0, the task's max_new_tokens and stop sequences), cut at the
  stops and compared with the target, exactly as the local engine's generate path;
- choice tasks, `logprobs` — completions with `echo` + `logprobs`: the summed log-probability of each choice's
  tokens after the query (lm-eval's API scoring), the task's `scoring` rule picks the prediction;
- choice tasks, `top_logprobs` — chat with `top_logprobs`, for labels that are single tokens: the first answer
  token's log-probability of each label (a label outside the top 20 gets none);
- choice tasks, `generate_match` — where the endpoint returns no log-probabilities (OpenAI chat models, `transformers
  serve`): a greedy answer matched to a choice (after whitespace, trailing punctuation and case); no match scores 0.
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evaluator.api.client import Answer, ApiClient, ResponseCache
from evaluator.api.spec import ApiModel, parse_api_spec
from evaluator.api.tokens import TiktokenTokenizer
from evaluator.arms.evaluate import CHUNK_ITEMS, Unit, _finish, resolve_shots
from evaluator.arms.rows import _cut_at_stop, pick_choice, scored_answer
from evaluator.errors import UserError
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.run_store import RunStore
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.metrics import scorer_for
from evaluator.tasks.spec import Item, Task

TOP_LOGPROBS = 20  # the most chat completions return per position
MAX_STOPS = 4  # OpenAI accepts at most four stop sequences


class NoLogprobs(Exception):
    """The endpoint answered without the log-probabilities the method needs."""


@dataclass
class ApiOption:
    """One API model of the job, ready to be asked: the endpoint, its client, how it is asked and counted."""

    model: ApiModel
    client: ApiClient
    endpoint: str  # "completions" | "chat"
    choice_scoring: str  # "auto" | "logprobs" | "generate"
    concurrency: int
    context: int | None  # tokens; None: unknown (explicit k is not checked, `max` is refused)
    context_how: str
    price: dict  # the unit record's api.price: which price-table entry (or the job's prices) bills it
    key_env: str

    @functools.cached_property
    def tokenizer(self) -> TiktokenTokenizer:
        """Counts for planning prompts (tiktoken; approximate for a model tiktoken does not know), built once."""
        return TiktokenTokenizer(self.model.model, self.model.provider)


def open_api_option(spec: str, settings: Any, *, check: bool = True) -> ApiOption:
    """The job's API model `spec` with the job's `api` settings: key from the environment, a client, and (``check``)
    one request to the endpoint's /models — a refused key, unknown model or unreachable endpoint stops here, before
    any unit runs."""
    from evaluator.costs.pricing import tunecheck_cache_root

    m = parse_api_spec(spec)
    var = settings.key_env or m.key_env
    key = os.environ.get(var) or None
    if m.provider and not key:
        raise UserError(f"{spec} needs an API key: export it as ${var} (or name another variable in api.key_env) — "
                        "the key is read from the environment only, never from the job file")
    if key and m.base_url.startswith("http://") and not m.is_loopback:
        raise UserError(f"{spec}: refusing to send the API key in ${var} over plain http to {m.base_url} — use https, "
                        "or unset the variable for a server that needs no key")
    cache = None
    if settings.cache:
        root = Path(settings.cache_dir).expanduser() if settings.cache_dir else tunecheck_cache_root() / "api"
        cache = ResponseCache(root)
    client = ApiClient(m, key=key, timeout_s=settings.timeout_s, max_retries=settings.max_retries,
                       max_wait_s=settings.max_wait_s, cache=cache, key_env=var)
    entry = client.check() if check else {}
    endpoint = m.default_endpoint if settings.endpoint == "auto" else settings.endpoint
    price = price_spec(m, settings)
    context, how = context_window(m, settings, entry)
    return ApiOption(m, client, endpoint, settings.choice_scoring, settings.concurrency, context, how, price, var)


def price_spec(m: ApiModel, settings: Any) -> dict:
    """Which prices bill this API model's usage: `api.price_as`, the price table's entry for the model itself, or
    the job's own prices (`api.input_usd_per_m` / `output_usd_per_m`); `how` is None when nothing prices it."""
    from evaluator.costs.pricing import api_model_problem

    over = {k: getattr(settings, k) for k in ("input_usd_per_m", "cached_input_usd_per_m", "output_usd_per_m")}
    out: dict[str, Any] = {"model": None, "provider": None, "how": None, **over}
    if settings.price_as:
        provider, _, model = settings.price_as.partition("/")
        return out | {"model": model, "provider": provider, "how": "price_as"}
    if api_model_problem(m.model, m.provider) is None:
        return out | {"model": m.model, "provider": m.provider, "how": "price table"}
    if over["input_usd_per_m"] is not None and over["output_usd_per_m"] is not None:
        return out | {"how": "job api prices"}
    return out


def context_window(m: ApiModel, settings: Any, entry: dict) -> tuple[int | None, str]:
    """The API model's context window: the job's `api.context_window`, the price table's for the model itself, the
    server's `max_model_len` (vLLM lists it), else unknown."""
    from evaluator.costs.pricing import ApiPriceError, api_prices

    if settings.context_window:
        return int(settings.context_window), "api.context_window"
    try:
        ctx = api_prices(m.model, m.provider).context_window
        if ctx:
            return int(ctx), f"the price table's context window for {m.model}"
    except (ApiPriceError, ImportError):
        pass
    if isinstance(entry.get("max_model_len"), int):
        return int(entry["max_model_len"]), "the server's max_model_len"
    return None, "unknown: set api.context_window"


# --- one item ----------------------------------------------------------------------------------------------------


@dataclass
class _Asked:
    """What the requests of one item cost and took (summed into its row)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    usage_missing: int = 0
    retries: int = 0
    from_cache: int = 0
    waited_s: float = 0.0

    def __post_init__(self) -> None:
        self.latency: list[float] = []
        self.errors: list[str] = []
        self.served: set[str] = set()

    def add(self, a: Answer) -> dict:
        self.requests += 1
        self.latency.append(round(a.latency_s, 6))
        self.retries += a.retries
        self.waited_s += a.waited_s
        self.errors.extend(a.errors)
        self.from_cache += int(a.from_cache)
        u = a.data.get("usage")
        if isinstance(u, dict) and isinstance(u.get("prompt_tokens"), int):
            self.prompt_tokens += int(u["prompt_tokens"])
            self.output_tokens += int(u.get("completion_tokens") or 0)
            details = u.get("prompt_tokens_details") or {}
            self.cached_tokens += int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        else:
            self.usage_missing += 1
        if isinstance(a.data.get("model"), str):
            self.served.add(a.data["model"])
        return a.data

    def fields(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "output_tokens": self.output_tokens, "seconds": round(sum(self.latency), 6), "requests": self.requests,
                "latency_s": self.latency, "retries": self.retries, "errors": self.errors,
                "waited_s": round(self.waited_s, 3),
                "from_cache": self.from_cache == self.requests, "cached_requests": self.from_cache,
                "usage_missing": self.usage_missing,
                "served_model": sorted(self.served)}


def _text_body(opt: ApiOption, prompt: str, max_tokens: int, stops: list[str]) -> tuple[str, dict]:
    stops = list(dict.fromkeys(s for s in stops if s))[:MAX_STOPS]
    body: dict[str, Any] = {"model": opt.model.model, "max_tokens": max_tokens, "temperature": 0}
    if stops:
        body["stop"] = stops
    if opt.endpoint == "chat":
        if opt.model.provider == "openai":  # OpenAI's chat API names it max_completion_tokens (newer models refuse max_tokens)
            body["max_completion_tokens"] = body.pop("max_tokens")
        return "/chat/completions", body | {"messages": [{"role": "user", "content": prompt}]}
    return "/completions", body | {"prompt": prompt}


def _text_of(opt: ApiOption, data: dict) -> str:
    try:
        c = data["choices"][0]
        text = c["message"].get("content") if opt.endpoint == "chat" else c["text"]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise UserError(f"{opt.model.spec}: the answer has no {'message content' if opt.endpoint == 'chat' else 'text'} "
                        "— is this an OpenAI-compatible endpoint?") from None
    return text or ""


def _generate(opt: ApiOption, task: Task, prompt: str, asked: _Asked) -> str:
    """The model's answer text as the endpoint returned it (greedy, the task's stops and max_new_tokens)."""
    spec = task.spec
    path, body = _text_body(opt, prompt, spec.max_new_tokens, spec.stops)
    return _text_of(opt, asked.add(opt.client.post(path, body)))


def _normal(s: str) -> str:
    return s.strip().rstrip(".,;:!").strip().casefold()


def _generate_match(opt: ApiOption, task: Task, tp: TokenizedPrompts, it: Item, prompt: str, asked: _Asked) -> dict:
    words = [tp.builder.verbalise(c) for c in it.choices]
    longest = max(len(tp.tokenizer(w)["input_ids"]) for w in words)
    stops = ["\n", *task.spec.stops]
    path, body = _text_body(opt, prompt, max(8, 2 * longest + 4), stops)
    raw = _text_of(opt, asked.add(opt.client.post(path, body)))
    text = _cut_at_stop(raw, stops).strip()
    match, how = None, None
    for j, w in enumerate(words):
        if text == w.strip():
            match, how = j, "exact"
            break
    if match is None:
        for j, w in enumerate(words):
            if _normal(text) == _normal(w):
                match, how = j, "normalised"
                break
    pred = it.choices[match] if match is not None else text
    return {"prediction": pred, "api_text": raw, "matched": how}


def _echo_loglik(opt: ApiOption, context: str, continuation: str, asked: _Asked) -> tuple[float, bool | None]:
    """Summed log-probability of `continuation`'s tokens after `context` (completions, echo): the tokens whose text
    overlaps the continuation's characters; whether each was the most likely token (when top_logprobs came)."""
    full = context + continuation
    body = {"model": opt.model.model, "prompt": full, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}
    data = asked.add(opt.client.post("/completions", body))
    try:
        lp = data["choices"][0].get("logprobs") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        lp = {}
    tokens, values = lp.get("tokens"), lp.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values) or not tokens:
        raise NoLogprobs("no echoed token log-probabilities")
    offsets = lp.get("text_offset")
    if not isinstance(offsets, list) or len(offsets) != len(tokens):
        offsets, pos = [], 0
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
    start, end = len(context), len(full)
    idx = [i for i, (o, t) in enumerate(zip(offsets, tokens)) if o < end and o + len(t) > start]
    if not idx or any(values[i] is None for i in idx):
        raise NoLogprobs("the continuation's tokens have no log-probabilities")
    tops = lp.get("top_logprobs")
    greedy = None
    if isinstance(tops, list) and len(tops) == len(tokens) and all(isinstance(tops[i], dict) and tops[i] for i in idx):
        greedy = all(max(tops[i], key=tops[i].get) == tokens[i] for i in idx)
    return float(sum(values[i] for i in idx)), greedy


def _top_logprobs(opt: ApiOption, prompt: str, words: list[str], asked: _Asked) -> list[float | None]:
    """The first answer token's log-probability of each single-token label (chat, top_logprobs); None: not among
    the top TOP_LOGPROBS."""
    path, body = _text_body(opt, prompt, 1, [])
    body |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    data = asked.add(opt.client.post(path, body))
    try:
        content = data["choices"][0]["logprobs"]["content"]
        tops = content[0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise NoLogprobs("no top_logprobs in the answer") from None
    best: dict[str, float] = {}
    for t in tops:
        if isinstance(t, dict) and isinstance(t.get("token"), str) and isinstance(t.get("logprob"), (int, float)):
            w = t["token"].strip()
            best[w] = max(best.get(w, float("-inf")), float(t["logprob"]))
    return [best.get(w.strip()) for w in words]


def ask_item(opt: ApiOption, task: Task, tp: TokenizedPrompts, it: Item, k: int, method: str) -> dict:
    """One item's row: the answer, its score, and what its requests used and took."""
    b = tp.builder
    prompt = b.prefix(k) + b.query(it)
    asked = _Asked()
    row: dict[str, Any] = {"item_id": it.id, "query": b.query(it), "target": it.target}
    if task.spec.kind == "choice":
        row["choices"] = list(it.choices)
    if method == "generate":
        raw = _generate(opt, task, prompt, asked)
        row |= scored_answer(task, scorer_for(task.spec), _cut_at_stop(raw, task.spec.stops), it) | {"api_text": raw}
    elif method == "generate_match":
        row |= _generate_match(opt, task, tp, it, prompt, asked)
        row["score"] = float(row["prediction"] == it.target and row["matched"] is not None)
    else:
        words = [b.verbalise(c) for c in it.choices]
        if method == "logprobs":
            pairs = [_echo_loglik(opt, prompt, b.continuation(c), asked) for c in it.choices]
            loglik: list[float | None] = [x for x, _ in pairs]
            row["is_greedy"] = [g for _, g in pairs]
        else:
            loglik = _top_logprobs(opt, prompt, words, asked)
        best, norm = pick_choice(task.spec.scoring, words, loglik)
        pred = it.choices[best] if best is not None else None
        row |= {"prediction": pred, "score": float(pred == it.target),
                "loglik": [None if x is None else round(x, 6) for x in loglik]}
        if norm is not None:
            row["loglik_norm"] = [None if x is None else round(x, 6) for x in norm]
    row["method"] = method
    row["item_tokens"] = len(tp.item_ids(it, k))
    row |= asked.fields()
    return row


# --- the method of a unit ----------------------------------------------------------------------------------------


def single_token_labels(tp: TokenizedPrompts, words: list[str]) -> bool:
    return all(len(tp.tokenizer(w.strip())["input_ids"]) == 1 for w in words)


def choose_method(opt: ApiOption, task: Task, tp: TokenizedPrompts, probe: Item | None, k: int,
                  stored: dict[str, dict]) -> tuple[str, str]:
    """(method, why) for a unit. Stored rows keep their method; otherwise the job's `api.choice_scoring` and what
    the endpoint returns for the first pending item (that request is cached, so the probe costs nothing extra)."""
    methods = {r.get("method") for r in stored.values()}
    if stored:
        if len(methods) != 1 or None in methods:
            raise UserError(f"{opt.model.spec}: stored rows of this unit were scored by {sorted(map(str, methods))} — "
                            "run with --recompute to score it again by one method")
        m = methods.pop()
        return m, f"{m}, as the unit's {len(stored)} stored row(s)"
    if task.spec.kind != "choice":
        return "generate", "generate task: greedy answer + exact match"
    if opt.choice_scoring == "generate":
        return "generate_match", "api.choice_scoring: generate"
    words = [tp.builder.verbalise(c) for c in (probe.choices if probe else [])]
    if opt.endpoint == "chat" and not single_token_labels(tp, words):
        if opt.choice_scoring == "logprobs":
            raise UserError(f"{opt.model.spec}: choice scoring by log-probabilities over chat needs single-token labels "
                            f"({', '.join(words[:4])} are not) — use api.endpoint: completions or api.choice_scoring: "
                            "generate (or auto)")
        return "generate_match", "chat endpoint and labels of several tokens: greedy answer matched to a choice"
    method = "logprobs" if opt.endpoint == "completions" else "top_logprobs"
    if probe is None:
        return method, f"{method} (nothing left to ask)"
    try:
        ask_item(opt, task, tp, probe, k, method)  # its answers land in the response cache
        return method, f"{method}: the endpoint returns log-probabilities"
    except NoLogprobs as exc:
        if opt.choice_scoring == "logprobs":
            raise UserError(f"{opt.model.spec}: api.choice_scoring is logprobs but the endpoint answers without "
                            f"log-probabilities ({exc}) — use api.choice_scoring: generate or auto") from None
        return "generate_match", (f"the endpoint returns no log-probabilities ({exc}; one probe request, not in the "
                                  "usage): greedy answer matched to a choice")


# --- the unit ----------------------------------------------------------------------------------------------------


def api_tokenized(task: Task, seed: int, opt: ApiOption) -> TokenizedPrompts:
    """Prompt texts and their tiktoken counts. Pieces are never sent (each prompt goes as one text and the endpoint
    tokenises it), so the piecewise-vs-whole check of local models is skipped (check_items=0)."""
    return TokenizedPrompts(PromptBuilder(task, seed), opt.tokenizer, check_items=0)


def evaluate_api_unit(unit: Unit, task: Task, items: list[Item], tp: TokenizedPrompts, opt: ApiOption,
                      store: RunStore, *, shots_cap: int, extra: dict | None = None,
                      progress: Callable[[int], None] | None = None) -> dict:
    """Ask every item of `unit` not already stored (`concurrency` at a time, appended chunk by chunk), then write the
    unit's record. A failure mid-chunk first appends the rows that were answered; the response cache holds every
    answer as it arrives, so a re-run asks nothing twice."""
    if unit.shots == "max" and opt.context is None:
        raise UserError(f"unit {unit.id}: shots: max needs {opt.model.spec}'s context window, which is {opt.context_how}")
    k, how = resolve_shots(unit.shots, tp, items, opt.context or 10**9, shots_cap)
    prefix_text = tp.builder.prefix(k)
    store.write_prefix(unit.id, prefix_text)
    done = store.finished_items(unit.id)
    todo = [it for it in items if it.id not in done]
    if progress and done:
        progress(len(items) - len(todo))
    method, why = choose_method(opt, task, tp, todo[0] if todo else None, k, done)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=opt.concurrency) as pool:
        for start in range(0, len(todo), CHUNK_ITEMS):
            chunk = todo[start : start + CHUNK_ITEMS]
            futures = [pool.submit(ask_item, opt, task, tp, it, k, method) for it in chunk]
            rows, failure = [], None
            for f in futures:
                try:
                    rows.append(f.result())
                except BaseException as exc:  # noqa: BLE001 - the answered rows are stored before it is raised
                    failure = failure or exc
            store.append_items(unit.id, rows)
            if progress:
                progress(len(rows))
            if failure is not None:
                raise failure
    wall = time.perf_counter() - t0
    rows = [store.finished_items(unit.id)[it.id] for it in items]
    summary = api_summary(opt, method, why, rows, wall)
    tok = opt.tokenizer
    extra = {**(extra or {}), "api": summary, "tokenisation": {
        "mode": "text", "encoding": tok.encoding, "exact": tok.exact,
        "note": (f"each prompt is sent as text and tokenised by the endpoint (usage counts are its own); {tok.note} — "
                 "these counts only plan the prompts (shots: max, the fit check, the zero-shot request size)")},
        "measured_with": {
        "device": f"API {opt.model.base_url} ({opt.model.model})", "device_type": "api", "dtype": None,
        "engine": "api", "batch_tokens": None, "chunk_items": CHUNK_ITEMS,
        "batch_note": f"{opt.concurrency} concurrent requests"}}
    prefix_tokens = len(tp.prefix_ids(k))
    return _finish(unit, task, items, k, how, prefix_tokens, opt.context, "api", 0.0, store, extra, tp=tp)


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q  # linear interpolation between closest ranks (numpy's default)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def api_summary(opt: ApiOption, method: str, why: str, rows: list[dict], wall_s: float) -> dict:
    """The unit record's `api`: how it was asked and scored, usage summed from the responses, latency per request
    (p50 / p95), retries and the errors that caused them, and what was answered from the cache."""
    lat = [x for r in rows for x in r.get("latency_s", [])]
    errors: dict[str, int] = {}
    for r in rows:
        for e in r.get("errors", []):
            errors[e] = errors.get(e, 0) + 1
    n = max(1, len(rows))
    tot = {k: sum(int(r.get(f, 0)) for r in rows) for k, f in
           (("input", "prompt_tokens"), ("cached", "cached_tokens"), ("output", "output_tokens"))}
    missing = sum(int(r.get("usage_missing", 0)) for r in rows)
    matched = [r.get("matched") for r in rows if r.get("method") == "generate_match"]
    out = {
        "spec": opt.model.spec, "base_url": opt.model.base_url, "model": opt.model.model,
        "provider": opt.model.provider, "endpoint": opt.endpoint, "scoring_method": method, "scoring_why": why,
        "requests": sum(int(r.get("requests", 0)) for r in rows),
        "from_cache": sum(int(r.get("cached_requests", 0)) for r in rows),
        "retries": sum(int(r.get("retries", 0)) for r in rows), "errors": errors,
        "latency_s": {"p50": _percentile(lat, 0.5), "p95": _percentile(lat, 0.95),
                      "mean": sum(lat) / len(lat) if lat else None, "max": max(lat) if lat else None, "n": len(lat)},
        "usage": {"input_tokens": tot["input"], "cached_input_tokens": tot["cached"], "output_tokens": tot["output"],
                  "items": len(rows), "input_tokens_per_item": tot["input"] / n,
                  "cached_input_tokens_per_item": tot["cached"] / n, "output_tokens_per_item": tot["output"] / n,
                  "source": "the responses' usage fields", "missing": missing},
        "price": opt.price, "concurrency": opt.concurrency, "wall_seconds_this_invocation": round(wall_s, 3),
        "served_models": sorted({m for r in rows for m in r.get("served_model", [])}),
        "context_window": opt.context, "context_how": opt.context_how,
        "token_counting": {"encoding": opt.tokenizer.encoding, "exact": opt.tokenizer.exact,
                           "note": "prompt planning (shots: max, fit) only; usage is billed from the responses"},
    }
    if matched:
        out["matched"] = {"exact": matched.count("exact"), "normalised": matched.count("normalised"),
                          "none": matched.count(None)}
    return out
