"""The job file: what to evaluate, how, and with which cost assumptions. Validated on load.

A job names task(s), a base model, newer base model(s), the three arms' sweeps, a seed and the cost inputs.
A bad file is reported as one line naming the field and the fix (UserError → exit 2).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluator import costs
from evaluator.errors import UserError

Shots = int | Literal["max"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptingArm(_Strict):
    """Arm A (and C by default): k fixed demonstrations in one shared prefix, for each k."""

    shots: list[Shots] = Field(default_factory=lambda: [0, 5])
    max_shots: Annotated[int, Field(ge=1)] = 256  # cap for `max`, so "max" stays bounded on huge windows

    @field_validator("shots")
    @classmethod
    def _non_negative(cls, v: list[Shots]) -> list[Shots]:
        if not v:
            raise ValueError("needs at least one shot count, e.g. [0, 5, max]")
        for k in v:
            if isinstance(k, int) and k < 0:
                raise ValueError(f"shot count {k} is negative; use 0, a positive number or 'max'")
        return v


class LoraArm(_Strict):
    """Arm B: one LoRA adapter per training size n, trained on the first n training items."""

    enabled: bool = True
    train_sizes: list[Annotated[int, Field(ge=1)] | Literal["all"]] = Field(default_factory=lambda: [64])
    r: Annotated[int, Field(ge=1)] = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: list[str] | None = None  # None: a sensible default for the architecture
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    epochs: Annotated[float, Field(gt=0)] = 2.0
    max_steps: Annotated[int, Field(ge=1)] | None = None
    batch_size: Annotated[int, Field(ge=1)] = 8  # global batch: split across processes under `accelerate launch`
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    eval_shots: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0])
    # Validation and early stopping: hold out val_fraction of the n items (at least 8) when n >= 40 (none for small
    # n); evaluate the answer-token loss every `eval_every` steps (None: once per epoch); stop after `patience`
    # evaluations without improvement and keep the best adapter weights.
    val_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    eval_every: Annotated[int, Field(ge=1)] | None = None
    patience: Annotated[int, Field(ge=1)] = 2
    gradient_checkpointing: bool = False  # trade compute for activation memory (long prompts, big models)
    group_by_length: bool = True  # length-grouped batches (False: plain shuffled batches, padded to the longest)


class NewerArm(_Strict):
    """Arm C: each newer base with a prompting sweep (default: the same shots as arm A)."""

    shots: list[Shots] | None = None


class Arms(_Strict):
    prompting: PromptingArm = Field(default_factory=PromptingArm)
    lora: LoraArm = Field(default_factory=LoraArm)
    newer: NewerArm = Field(default_factory=NewerArm)


class CostConfig(_Strict):
    """Cost assumptions, recorded with the run; every one is overridable later by `tunecheck cost`.

    Defaults are the cost model's (evaluator/costs.py explains each)."""

    volume_tokens_per_day: Annotated[float, Field(gt=0)] = costs.DEFAULT_VOLUME_TOKENS_PER_DAY
    requests_per_day: Annotated[float, Field(gt=0)] | None = None
    gpu_hourly_usd: Annotated[float, Field(ge=0)] = costs.DEFAULT_GPU_HOURLY_USD
    gpus: Annotated[int, Field(ge=1)] = 1
    utilisation: Annotated[float, Field(gt=0, le=1)] = costs.DEFAULT_UTILISATION
    api_model: str = "gpt-4o-mini"
    api_provider: str = "openai"
    api_input_usd_per_m: Annotated[float, Field(ge=0)] | None = None
    api_cached_input_usd_per_m: Annotated[float, Field(ge=0)] | None = None
    api_output_usd_per_m: Annotated[float, Field(ge=0)] | None = None
    refresh_months: Annotated[float, Field(gt=0)] = costs.DEFAULT_REFRESH_MONTHS
    engineering_hours_per_training: Annotated[float, Field(ge=0)] = costs.DEFAULT_ENGINEERING_HOURS_PER_TRAINING
    engineering_usd_per_hour: Annotated[float, Field(ge=0)] = costs.DEFAULT_ENGINEERING_USD_PER_HOUR
    selfhost_ops_hours_per_month: Annotated[float, Field(ge=0)] = costs.DEFAULT_SELFHOST_OPS_HOURS_PER_MONTH
    self_host_threshold_usd_per_year: Annotated[float, Field(gt=0)] = costs.DEFAULT_SELF_HOST_THRESHOLD_USD_PER_YEAR
    days_per_month: Annotated[float, Field(gt=0)] = 30.0
    prefix_cache_hours: Annotated[float, Field(gt=0)] = costs.DEFAULT_PREFIX_CACHE_HOURS


class VerdictConfig(_Strict):
    """How the verdict weighs quality (see README "The verdict").

    `margin` (absolute quality) is the smallest LoRA gain worth an adapter's upkeep: "not needed" needs the paired
    interval's upper end at or below it, "justified" its lower end above it. `alpha` sets every interval and test.
    Operating points are chosen on a seeded `selection_fraction` of the test items and tested on the rest
    (`selection: split`); `selection: bootstrap` (or a run too small to split) chooses on all items and bootstraps
    the whole select-then-compare procedure. `selection_seed` defaults to the job's seed."""

    margin: Annotated[float, Field(ge=0, lt=1)] = 0.02
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    selection: Literal["split", "bootstrap"] = "split"
    selection_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    selection_seed: int | None = None
    bootstrap_reps: Annotated[int, Field(ge=200, le=100_000)] = 2000


class Job(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: Annotated[str, Field(max_length=1000)] | None = None  # shown at the top of the report
    tasks: list[str] = Field(min_length=1)  # names in tasks/, task YAML paths, or lm-eval:<task> / lm-eval:<file>.yaml
    lm_eval_include: list[str] = Field(default_factory=list)  # folders of lm-eval task YAMLs (relative to the job file)
    base: str
    newer: list[str] = Field(default_factory=list)
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    limit: Annotated[int, Field(ge=1)] | None = None  # cap on test items (the first N of the test split)
    trust_remote_code: bool = False  # run a model repo's own Python code: only for code you trust
    allow_pickle: bool = False  # load .bin/.pt weights (unpickling can run code); default: safetensors only
    engine: Literal["auto", "packed", "plain", "lm-eval"] = "auto"  # lm-eval: the reference path (simple_evaluate)
    batch_tokens: Annotated[int, Field(ge=64)] = 4096
    arms: Arms = Field(default_factory=Arms)
    costs: CostConfig = Field(default_factory=CostConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    output_dir: str = "runs"
    adapters_dir: str = "adapters"
    model_cache: str | None = None  # where built-in models are converted to (default ~/.cache/tunecheck/models)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in {"auto", "cpu", "cuda", "mps"} or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda, cuda:N or mps")
        return v

    def newer_shots(self) -> list[Shots]:
        return self.arms.newer.shots or self.arms.prompting.shots

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not output_dir): the same job resumes the same run."""
        payload = self.model_dump(exclude={"output_dir", "adapters_dir", "model_cache", "costs", "verdict", "description"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: the first problem, its field path and how to fix it."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in {"int", "literal['max']"}))
    more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown field '{loc}' — remove it or check its spelling{more}"
    if e["type"] == "missing":
        return f"{source}: missing required field '{loc}' — add it{more}"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{source}: field '{loc}': {msg} (got {e.get('input')!r}){more}"


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping safely, turning every read/parse problem into one UserError line."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist — check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text — re-save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} {path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
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
