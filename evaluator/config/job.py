"""The job file: what to evaluate, how, and with which cost assumptions. Validated on load.

A job names task(s), a base model, newer base model(s), the three arms' sweeps, a seed and the cost inputs.
A bad file is reported as one line naming the field and the fix (UserError → exit 2). Everything that can be checked
without data or a model is checked here: a YAML boolean where a number or text is expected (`shots: [yes]` is not
k=1), `MAX` for `max`, a repeated shot count or training size (it would plan the same unit twice), an API model the
price table does not know, a key given twice in the YAML (YAML itself keeps the last one silently).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from evaluator.costs import model as costs
from evaluator.errors import UserError


def _err(msg: str, *loc_extra: Any) -> PydanticCustomError:
    """A validation error with our own one-line message (and, optionally, a finer position inside the field)."""
    return PydanticCustomError("tunecheck", "{msg}", {"msg": msg, "loc_extra": tuple(loc_extra)})


# --- YAML booleans where numbers or text are expected --------------------------------------------------------------

BOOL_HINT_TEXT = 'quote YAML booleans ("yes" / "no"): unquoted yes/no/on/off/true/false are read as True/False'
BOOL_HINT_NUMBER = "write a number: unquoted yes/no/on/off/true/false are YAML booleans (True/False), not numbers"


def _accepts(tp: Any, kind: type) -> bool:
    """Whether the annotation `tp` takes values of `kind` (bool, int, float or str) anywhere in it."""
    if tp is kind or tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _accepts(get_args(tp)[0], kind)
    if origin is Literal:
        return any(isinstance(a, kind) for a in get_args(tp))
    return any(_accepts(a, kind) for a in get_args(tp))


def _has_model(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return True
    return any(_has_model(a) for a in get_args(tp))


def _find_bool(value: Any, path: tuple = ()) -> tuple | None:
    """Where the first bool sits inside a plain YAML value (lists and mappings), or None."""
    if isinstance(value, bool):
        return path
    items = enumerate(value) if isinstance(value, (list, tuple)) else value.items() if isinstance(value, dict) else ()
    for k, v in items:
        if (p := _find_bool(v, (*path, k))) is not None:
            return p
    return None


def refuse_yaml_booleans(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A `mode="before"` check for every field of a model: a bool where the field takes none is refused, with the hint
    to write a number or to quote the word (`shots: [yes]` would silently be k=1, `choices: [yes, no]` True/False)."""
    fi = cls.model_fields.get(info.field_name or "")
    if fi is None or _has_model(fi.annotation) or _accepts(fi.annotation, bool):
        return value
    at = _find_bool(value)
    if at is None:
        return value
    got = value
    for p in at:
        got = got[p]
    numeric = _accepts(fi.annotation, int) or _accepts(fi.annotation, float)
    hint = BOOL_HINT_NUMBER if numeric or not _accepts(fi.annotation, str) else BOOL_HINT_TEXT
    raise _err(f"got the YAML boolean {got!r} — {hint}", *at)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)


# --- shot counts and training sizes --------------------------------------------------------------------------------


def _word(v: Any, word: str, what: str) -> Any:
    """`max` / `all` in another case, or text that is neither a number nor the word: one clear message."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    if s == word:
        return s
    if s.lower() == word:
        raise _err(f"{v!r}: use '{word}' (lower case)")
    try:
        return int(s)
    except ValueError:
        raise _err(f"{v!r} is not {what} — write a number or '{word}'") from None


Shots = Annotated[int | Literal["max"], BeforeValidator(lambda v: _word(v, "max", "a shot count"))]
TrainSize = Annotated[Annotated[int, Field(ge=1)] | Literal["all"], BeforeValidator(lambda v: _word(v, "all", "a training size"))]


def _no_repeats(values: list | None, what: str) -> None:
    seen: list = []
    for i, v in enumerate(values or []):
        if v in seen:
            raise _err(f"{v!r} is listed twice — {what} must be distinct (each is one unit of the run); remove the repeat", i)
        seen.append(v)


def _check_shots(v: list) -> list:
    if not v:
        raise _err("needs at least one shot count, e.g. [0, 5, max]")
    for i, k in enumerate(v):
        if isinstance(k, int) and k < 0:
            raise _err(f"shot count {k} is negative; use 0, a positive number or 'max'", i)
    _no_repeats(v, "shot counts")
    return v


class PromptingArm(_Strict):
    """Arm A (and C by default): k fixed demonstrations in one shared prefix, for each k."""

    shots: list[Shots] = Field(default_factory=lambda: [0, 5], description="Shot counts k to sweep, one unit each; `max` = the largest k whose prefix + longest item and answer fit the context window, by token count (never truncated).")
    max_shots: Annotated[int, Field(ge=1)] = Field(256, description="Cap on the k that `max` resolves to, so `max` stays bounded on huge context windows.")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[Shots]) -> list[Shots]:
        return _check_shots(v)


class LoraArm(_Strict):
    """Arm B: one LoRA adapter per training size n, trained on the first n training items."""

    enabled: bool = Field(True, description="Run arm B (LoRA adapters); false: no training, arms A and C only.")
    train_sizes: list[TrainSize] = Field(default_factory=lambda: [64], description="Training sizes n to sweep (the learning curve), one adapter each, trained on the first n training items in file order; `all` = the whole training split (sizes above it collapse onto it).")
    r: Annotated[int, Field(ge=1)] = Field(8, description="LoRA rank.")
    alpha: Annotated[float, Field(gt=0)] = Field(16.0, description="LoRA alpha: the adapter update is scaled by alpha / r.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.05, description="Dropout on the LoRA layers' input during training.")
    target_modules: list[str] | None = Field(None, description="Module names LoRA adapts (e.g. [q_proj, v_proj]); null: every attention and MLP projection of the architecture; checked right after the base loads.")
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="Peak AdamW learning rate (linear warm-up, then linear decay to 0).")
    epochs: Annotated[float, Field(gt=0)] = Field(2.0, description="Passes over the n training items (fractions allowed); max_steps, when set, overrides it.")
    max_steps: Annotated[int, Field(ge=1)] | None = Field(None, description="Optimizer steps to train for; null: as many as `epochs` gives.")
    batch_size: Annotated[int, Field(ge=1)] = Field(8, description="Global batch size, split across processes under `accelerate launch` (out of GPU memory: smaller micro-batches with gradient accumulation).")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="Share of the training steps with a linear learning-rate warm-up.")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay.")
    eval_shots: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], description="Shot counts every adapter is evaluated at, one unit each (0 = zero-shot, as it was trained).")
    # Validation and early stopping: hold out val_fraction of the n items (at least 8) when n >= 40 (none for small
    # n); evaluate the answer-token loss every `eval_every` steps (None: once per epoch); stop after `patience`
    # evaluations without improvement and keep the best adapter weights.
    val_fraction: Annotated[float, Field(ge=0, lt=0.5)] = Field(0.1, description="Share of the n training items held out for validation and early stopping (at least 8 items, only when n >= 40; 0 = no validation).")
    eval_every: Annotated[int, Field(ge=1)] | None = Field(None, description="Evaluate the validation loss (answer tokens) every N optimizer steps; null: once per epoch.")
    patience: Annotated[int, Field(ge=1)] = Field(2, description="Stop after this many validations without improvement; the best adapter weights are kept.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less activation memory for more compute (long prompts, big models).")
    group_by_length: bool = Field(True, description="Length-grouped batches (less padding); false: plain shuffled batches, padded to the longest.")

    @field_validator("train_sizes")
    @classmethod
    def _sizes(cls, v: list) -> list:
        if not v:
            raise _err("needs at least one training size, e.g. [16, 64, all]")
        _no_repeats(v, "training sizes")
        return v

    @field_validator("eval_shots")
    @classmethod
    def _eval_shots(cls, v: list) -> list:
        if not v:
            raise _err("needs at least one shot count, e.g. [0]")
        _no_repeats(v, "shot counts")
        return v


def effective_train_sizes(train_sizes: list[int | str], n_train: int, task: str = "the task") -> tuple[list[int], list[str]]:
    """The distinct numbers of training items `train_sizes` trains on once the training split has `n_train` items
    (`all` and every size above `n_train` are `n_train`), in the job's order, and one note per size that collapsed
    onto an earlier one — so the planner plans each adapter once (a unit planned twice never finishes)."""
    out: list[int] = []
    notes: list[str] = []
    first: dict[int, int | str] = {}
    for n in train_sizes:
        eff = n_train if n == "all" else min(int(n), n_train)
        if eff in first:
            notes.append(
                f"arms.lora.train_sizes: {n!r} trains on the same {eff} items of {task} as {first[eff]!r} (its training "
                f"split has {n_train} items) — planned once"
            )
            continue
        first[eff] = n
        out.append(eff)
    return out, notes


def dedupe_units_note(units: list) -> tuple[list, list[str]]:
    """`units` without repeats of the same unit id (the first is kept, in order), and one note per dropped unit."""
    kept, seen, notes = [], set(), []
    for u in units:
        uid = getattr(u, "id", u)
        if uid in seen:
            notes.append(f"unit {uid} was planned twice (two settings give the same unit) — planned once")
            continue
        seen.add(uid)
        kept.append(u)
    return kept, notes


class NewerArm(_Strict):
    """Arm C: each newer base with a prompting sweep (default: the same shots as arm A)."""

    shots: list[Shots] | None = Field(None, description="Shot counts for every newer base (arm C), as in arms.prompting.shots; null: the same as arms.prompting.shots.")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[Shots] | None) -> list[Shots] | None:
        return None if v is None else _check_shots(v)


class Arms(_Strict):
    prompting: PromptingArm = Field(default_factory=PromptingArm, description="Arm A: the base model prompted with k demonstrations in one shared prefix.")
    lora: LoraArm = Field(default_factory=LoraArm, description="Arm B: LoRA fine-tunes (peft) of the base, loss on answer tokens only.")
    newer: NewerArm = Field(default_factory=NewerArm, description="Arm C: the newer base model(s) (job `newer`), prompted like arm A.")


def api_model_problem(model: str, provider: str | None, input_usd_per_m: float | None = None,
                      output_usd_per_m: float | None = None) -> tuple[str, str] | None:
    """None when the price table prices `model` (or both prices are given), else (field, one-line reason with the
    closest names) — the check `tunecheck cost --api-model` makes, done when the job loads."""
    try:
        from evaluator.costs.pricing import ApiPriceError, _bundled_snapshot, api_prices

        api_prices(model, provider, {"input_usd_per_m": input_usd_per_m, "output_usd_per_m": output_usd_per_m})
        return None
    except ImportError:  # pragma: no cover - genai-prices is a dependency; without it `tunecheck cost` says so
        return None
    except ApiPriceError:
        pass
    try:
        providers = list(_bundled_snapshot().providers)
    except Exception:  # noqa: BLE001  # pragma: no cover - the bundled table always loads
        providers = []
    prov_ids = [p.id for p in providers]
    if provider and provider not in prov_ids:
        near = difflib.get_close_matches(provider, prov_ids, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(near)}?" if near else "e.g. openai, anthropic, google"
        return "api_provider", f"unknown API provider {provider!r} in the price table — {hint}"
    if provider:
        try:
            other = api_prices(model, None).provider
            return "api_model", (f"API model {model!r} is not priced under provider {provider!r} but under {other!r} — "
                                 f"set costs.api_provider: {other}")
        except ApiPriceError:
            pass
    names = sorted({m.id for p in providers if not provider or p.id == provider for m in p.models})
    near = difflib.get_close_matches(model, names, n=3, cutoff=0.5)
    where = f"provider {provider!r}" if provider else "any provider"
    hint = f"did you mean {', '.join(near)}?" if near else "check the model id"
    return "api_model", (
        f"no price for API model {model!r} ({where}) in the price table — {hint} (or give both "
        "costs.api_input_usd_per_m and costs.api_output_usd_per_m)"
    )


class CostConfig(_Strict):
    """Cost assumptions, recorded with the run; every one is overridable later by `tunecheck cost`.

    Defaults are the cost model's (evaluator/costs.py explains each)."""

    volume_tokens_per_day: Annotated[float, Field(gt=0)] = Field(costs.DEFAULT_VOLUME_TOKENS_PER_DAY, description="Traffic in tokens per day, counted as zero-shot requests (instruction + input + reference answer); converted to requests/day, the same for every arm.")
    requests_per_day: Annotated[float, Field(gt=0)] | None = Field(None, description="Traffic in requests per day; when set it overrides volume_tokens_per_day.")
    gpu_hourly_usd: Annotated[float, Field(ge=0)] = Field(costs.DEFAULT_GPU_HOURLY_USD, description="GPU rental price, $ per GPU-hour (serving and training).")
    gpus: Annotated[int, Field(ge=1)] = Field(1, description="GPUs the serving throughput was measured on.")
    utilisation: Annotated[float, Field(gt=0, le=1)] = Field(costs.DEFAULT_UTILISATION, description="Average utilisation of the serving GPUs, in (0, 1] (training runs them flat out).")
    api_model: str = Field("gpt-4o-mini", description="API model to compare with (a genai-prices model id); checked against the price table when the job loads.")
    api_provider: str = Field("openai", description="Provider id of api_model in the price table (e.g. openai, anthropic, google).")
    api_input_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Negotiated API input price, $ per million tokens; null: the price table's.")
    api_cached_input_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Negotiated API cached-input price, $ per million tokens; null: the price table's.")
    api_output_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Negotiated API output price, $ per million tokens; null: the price table's.")
    refresh_months: Annotated[float, Field(gt=0)] = Field(costs.DEFAULT_REFRESH_MONTHS, description="Base-model refresh period in months: the adapter is retrained this often, so its training cost is amortised over it.")
    engineering_hours_per_training: Annotated[float, Field(ge=0)] = Field(costs.DEFAULT_ENGINEERING_HOURS_PER_TRAINING, description="Engineering hours per (re)training of the adapter.")
    engineering_usd_per_hour: Annotated[float, Field(ge=0)] = Field(costs.DEFAULT_ENGINEERING_USD_PER_HOUR, description="Engineering cost, $ per hour (retraining and self-host operations).")
    selfhost_ops_hours_per_month: Annotated[float, Field(ge=0)] = Field(costs.DEFAULT_SELFHOST_OPS_HOURS_PER_MONTH, description="Operations hours per month to run self-hosted serving (a fixed monthly cost).")
    self_host_threshold_usd_per_year: Annotated[float, Field(gt=0)] = Field(costs.DEFAULT_SELF_HOST_THRESHOLD_USD_PER_YEAR, description="Annual API spend above which self-hosting is worth examining on cost (the article's $500K/year rule).")
    days_per_month: Annotated[float, Field(gt=0)] = Field(30.0, description="Days in a costed month.")
    prefix_cache_hours: Annotated[float, Field(gt=0)] = Field(costs.DEFAULT_PREFIX_CACHE_HOURS, description="How long a serving replica keeps the shared prefix cached before encoding it again (the prefix is priced once per lifetime).")

    @model_validator(mode="after")
    def _api_model_priced(self) -> CostConfig:
        problem = api_model_problem(self.api_model, self.api_provider, self.api_input_usd_per_m, self.api_output_usd_per_m)
        if problem is not None:
            raise _err(problem[1], problem[0])
        return self


class VerdictConfig(_Strict):
    """How the verdict weighs quality (see README "The verdict").

    `margin` (absolute quality) is the smallest LoRA gain worth an adapter's upkeep: "not needed" needs the paired
    interval's upper end at or below it, "justified" its lower end above it. `alpha` sets every interval and test.
    Operating points are chosen on a seeded `selection_fraction` of the test items and tested on the rest
    (`selection: split`); `selection: bootstrap` (or a run too small to split) chooses on all items and bootstraps
    the whole select-then-compare procedure. `selection_seed` defaults to the job's seed."""

    margin: Annotated[float, Field(ge=0, lt=1)] = Field(0.02, description="Smallest LoRA gain (absolute quality) worth an adapter's upkeep: `not needed` needs the paired interval's upper end at or below it, `justified` its lower end above it.")
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(0.05, description="Significance level of every interval and test (0.05: 95% intervals).")
    selection: Literal["split", "bootstrap"] = Field("split", description="`split`: choose each arm's operating point on a seeded selection split of the test items and test on the rest; `bootstrap`: choose on all items and bootstrap the whole select-then-compare procedure.")
    selection_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(0.3, description="Share of the test items in the selection split (too few items left: bootstrap instead).")
    selection_seed: int | None = Field(None, description="Seed of the selection split and the bootstrap; null: the job's seed.")
    bootstrap_reps: Annotated[int, Field(ge=200, le=100_000)] = Field(2000, description="Resamples of the select-then-compare bootstrap.")


class Job(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=80, description="Job name; the default run folder is <name>-<hash of the job and its inputs> under output_dir.")]
    description: Annotated[str, Field(max_length=1000)] | None = Field(None, description="Free text shown at the top of the report.")
    tasks: list[str] = Field(min_length=1, description="Tasks to run: names in tasks/, task YAML paths, or lm-eval:<task> / lm-eval:<file>.yaml.")
    lm_eval_include: list[str] = Field(default_factory=list, description="Folders of lm-eval task YAMLs for lm-eval:<task> references, relative to the job file (their `!function` code runs: only folders you trust).")
    base: str = Field(description="The base model (arms A and B): a hub id, a local folder, or a built-in name (smollm2-135m, gemma3-270m).")
    newer: list[str] = Field(default_factory=list, description="Newer base model(s) for arm C, in the same forms as base; empty: no arm C.")
    seed: int = Field(1234, description="Seed of the demonstration order, LoRA training and (unless verdict.selection_seed) the selection split.")
    device: str = Field("auto", description="Device: auto | cpu | cuda | cuda:N | mps.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Model dtype; auto: bfloat16 (else float16) on a GPU, float32 on a CPU.")
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="Cap on test items: the first N of the test split; null: all of them.")
    trust_remote_code: bool = Field(False, description="Run a model repo's own Python code (transformers' trust_remote_code): only for code you trust.")
    allow_pickle: bool = Field(False, description="Load .bin/.pt weights (unpickling can run code); false: safetensors only, pickle-only folders are refused.")
    engine: Literal["auto", "packed", "plain", "lm-eval"] = Field("auto", description="Scoring engine: auto (packed where the architecture supports it, else plain), packed (shared-prefix KV cache, requests packed per forward), plain (batched full re-encoding), lm-eval (the reference path, lm-eval's simple_evaluate).")
    batch_tokens: Annotated[int, Field(ge=64)] = Field(4096, description="Most tokens per forward pass when scoring (an offline scoring batch); halved and retried on GPU out-of-memory.")
    arms: Arms = Field(default_factory=Arms, description="The three arms' sweeps and settings.")
    costs: CostConfig = Field(default_factory=CostConfig, description="Cost assumptions, recorded with the run; `tunecheck cost` can override each later.")
    verdict: VerdictConfig = Field(default_factory=VerdictConfig, description="How the verdict weighs quality (README, \"The verdict\").")
    output_dir: str = Field("runs", description="Parent folder of the run folders (a relative path is relative to the current directory); not part of the run id.")
    adapters_dir: str = Field("adapters", description="Where LoRA adapters are stored and reused by key (a relative path is relative to the current directory).")
    model_cache: str | None = Field(None, description="Where built-in models are converted to; null: $TUNECHECK_CACHE/models, else ~/.cache/tunecheck/models. `tunecheck run` takes it from here (it has no --model-cache option; demo, train and eval do).")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in {"auto", "cpu", "cuda", "mps"} or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        for i, t in enumerate(v):
            if t in v[:i]:
                raise _err(f"task {t!r} is listed twice in tasks — remove one", i)
        return v

    @field_validator("newer")
    @classmethod
    def _newer(cls, v: list[str]) -> list[str]:
        for i, m in enumerate(v):
            if m in v[:i]:
                raise _err(f"model {m!r} is listed twice in newer — remove one", i)
        return v

    def newer_shots(self) -> list[Shots]:
        return self.arms.newer.shots or self.arms.prompting.shots

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not output_dir): the same job resumes the same run."""
        payload = self.model_dump(exclude={"output_dir", "adapters_dir", "model_cache", "costs", "verdict", "description"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


# --- one line per validation problem -------------------------------------------------------------------------------


def _is_union_tag(part: Any) -> bool:
    """pydantic puts the union member it tried into the error location (`int`, `constrained-int`, `literal['max']`,
    `function-after[...]`, …): not a field, so not shown."""
    if not isinstance(part, str):
        return False
    return (
        part in {"int", "str", "float", "bool", "none", "bytes", "list", "dict"}
        or "[" in part
        or part.startswith(("constrained-", "function-", "lax-", "json-", "is-instance", "chain", "nullable"))
    )


def clean_loc(loc: tuple) -> str:
    """A field path as the user wrote it: `arms.lora.train_sizes.0`, without pydantic's union-member tags."""
    return ".".join(str(p) for p in loc if not _is_union_tag(p))


def _loc_of(e: dict) -> str:
    extra = (e.get("ctx") or {}).get("loc_extra") or ()
    return clean_loc((*e["loc"], *extra))


def _pick(errors: list[dict]) -> dict:
    """Of one field's union-member errors, the most telling: ours, then a bound (>= 1), then the first."""
    ranked = sorted(errors, key=lambda e: (e["type"] != "tunecheck", e["type"] == "literal_error", e["type"].endswith("_parsing")))
    return ranked[0]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line with every problem: the first, its field path and how to fix it, then each other field's problem
    after "; also: " (one UserError line, however many fields are wrong)."""
    errors = err.errors()
    by_loc: dict[str, list[dict]] = {}
    for x in errors:  # one field, several union members: one problem
        by_loc.setdefault(_loc_of(x), []).append(x)

    def problem(loc: str, same: list[dict]) -> str:
        e = _pick(same)
        if e["type"] == "extra_forbidden":
            return f"unknown field '{loc}' — remove it or check its spelling"
        if e["type"] == "missing":
            return f"missing required field '{loc}' — add it"
        if e["type"] == "tunecheck":
            return f"field '{loc}': {e['msg']}"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        hint = ""
        if got is None and e["type"] not in {"value_error"}:
            hint = " — the field is empty in the YAML: give it a value or remove the line"
        if len(same) > 1 and any(x["type"] == "literal_error" for x in same) and e["type"] != "literal_error":
            words = [x.get("ctx", {}).get("expected") for x in same if x["type"] == "literal_error"]
            hint = f" — or {' or '.join(w for w in words if w)}"
        return f"field '{loc}': {msg} (got {got!r}){hint}"

    texts = [" ".join(problem(loc, same).splitlines()) for loc, same in by_loc.items()]
    return f"{source}: {texts[0]}" + (f"; also: {'; '.join(texts[1:])}" if len(texts) > 1 else "")


# --- YAML ----------------------------------------------------------------------------------------------------------


class DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(None, None, f"key {key!r} is given twice (lines {first_line} and {line})", None)
        self.key, self.first_line, self.line = key, first_line, line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice (plain YAML keeps the last value silently); keys
    brought in by a `<<` merge may still be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], key_node.start_mark.line + 1)
                except TypeError:  # unhashable: the base class says so
                    continue
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str, what: str) -> Any:
    """YAML text → data with UniqueKeyLoader; a syntax error or a repeated key is one UserError line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise UserError(f"{what} {source}: line {exc.line}: key {exc.key!r} is given twice (first on line "
                        f"{exc.first_line}) — keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} {source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping safely, turning every read/parse problem into one UserError line."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file — give the path of the YAML file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist — check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text — re-save it as UTF-8") from None
    data = parse_yaml(text, str(path), what)
    if data is None:
        raise UserError(f"{what} {path} is empty — write its fields (see README)")
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must be a YAML mapping of fields, got {type(data).__name__}")
    return data


def load_job(path: str | Path) -> Job:
    path = Path(path)
    data = load_yaml(path, "job file")
    try:
        return Job.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, str(path))) from None
