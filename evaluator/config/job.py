"""The job file: what to evaluate, how, and with which cost assumptions. Validated on load.

A job names task(s), a base model, newer base model(s), the three arms' sweeps, a seed and the cost inputs.
A bad file is reported as one line naming the field and the fix (UserError → exit 2). Everything that can be checked
without data or a model is checked here: a YAML boolean where a number or text is expected (`shots: [yes]` is not
k=1), `MAX` for `max`, a repeated shot count or training size (it would plan the same unit twice), an API model the
price table does not know, a key given twice in the YAML (YAML itself keeps the last one silently).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from evaluator.api.spec import ApiSpecError, is_api, parse_api_spec
from evaluator.config import placement
from evaluator.config.api import ApiSettings
from evaluator.config.arms import Arms, Shots
from evaluator.config.validation import _Strict, field_error, format_validation_error, load_yaml
from evaluator.costs import inputs as costs
from evaluator.costs.pricing import api_model_problem
from evaluator.errors import UserError

# --- YAML booleans where numbers or text are expected --------------------------------------------------------------


# --- shot counts and training sizes --------------------------------------------------------------------------------


def _cost_fields() -> dict[str, Any]:
    """CostConfig's fields, generated from :class:`evaluator.costs.inputs.CostInputs` (the one cost schema): each
    input's name, type, default and meaning, with the bounds the job file applies (``input_bounds(..., job=True)``)."""
    types = costs.input_types()
    out: dict[str, Any] = {}
    for f in dataclasses.fields(costs.CostInputs):
        tp, bounds = types[f.name], costs.input_bounds(f, job=True)
        if bounds:  # bounds on an optional input bound its value: `Annotated[float, Field(gt=0)] | None`
            args = get_args(tp)
            inner = [a for a in args if a is not type(None)]
            tp = Annotated[inner[0], Field(**bounds)] | None if type(None) in args else Annotated[tp, Field(**bounds)]
        out[f.name] = (tp, Field(f.default, description=f.metadata["description"]))
    return out


def _api_model_priced(self: Any) -> Any:
    problem = api_model_problem(self.api_model, self.api_provider, self.api_input_usd_per_m, self.api_output_usd_per_m)
    if problem is not None:
        raise field_error(problem[1], problem[0])
    return self


# The job's `costs:` section: generated from CostInputs (the same names, types, defaults and meanings), so the job
# file and the cost model cannot disagree on a cost input; the price-table check runs when the job loads.
CostConfig = create_model(
    "CostConfig",
    __base__=_Strict,
    __module__=__name__,
    __doc__="""Cost assumptions, recorded with the run; every one is overridable later by `tunecheck cost`.

    Defaults are the cost model's (evaluator/costs/inputs.py explains each).""",
    __validators__={"_api_model_priced": model_validator(mode="after")(_api_model_priced)},
    **_cost_fields(),
)


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
    newer: list[str] = Field(default_factory=list, description="Newer base model(s) for arm C, in the same forms as base, or API models: api:<provider>/<model> (e.g. api:openai/gpt-4o-mini) or api:<URL of an OpenAI-compatible /v1 base>#<model>; empty: no arm C.")
    seed: int = Field(1234, description="Seed of the demonstration order, LoRA training and (unless verdict.selection_seed) the selection split.")
    device: str = Field("auto", description="Device: auto | cpu | cuda | cuda:N | mps.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Model dtype; auto: bfloat16 (else float16) on a GPU, float32 on a CPU.")
    device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | dict[str, int | str] | None = Field(None, description="Spread a base larger than one device over several (transformers/accelerate big-model loading): auto, balanced, balanced_low_0, sequential, or a mapping of module names to devices (GPU index, cuda:N, cpu, mps, disk); each layer keeps its prefix KV cache on its own device, inputs go to the input embeddings' device. Applies to every model the job loads (an explicit map names one architecture's modules); needs device: auto; not part of the run id (placement does not change results). null: the whole model on `device`.")
    max_memory: dict[int | str, int | str] | None = Field(None, description="With device_map auto/balanced/...: the most accelerate may place on each device, e.g. {0: 70GiB, 1: 70GiB, cpu: 200GiB} (bytes, or KB/MB/GB/TB, KiB/MiB/GiB/TiB); what does not fit goes to the next device, then to disk (an offload folder under the model cache). null: what each device has free.")
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="Cap on test items: the first N of the test split; null: all of them.")
    trust_remote_code: bool = Field(False, description="Run a model repo's own Python code (transformers' trust_remote_code): only for code you trust.")
    allow_pickle: bool = Field(False, description="Load .bin/.pt weights (unpickling can run code); false: safetensors only, pickle-only folders are refused.")
    engine: Literal["auto", "packed", "plain", "lm-eval"] = Field("auto", description="Scoring engine: auto (packed where the architecture supports it, else plain), packed (shared-prefix KV cache, requests packed per forward), plain (batched full re-encoding), lm-eval (the reference path, lm-eval's simple_evaluate).")
    batch_tokens: Annotated[int, Field(ge=64)] = Field(4096, description="Most tokens per forward pass when scoring (an offline scoring batch); halved and retried on GPU out-of-memory.")
    # Left out of dumps when null, so jobs without it keep their fingerprint (and run id).
    prompt_format: Literal["raw", "chat"] | None = Field(None, exclude_if=lambda v: v is None, description="Overrides every task's `prompt_format`: `chat` renders all prompts (arms A, B and C, and LoRA training) with each model's chat template, as lm-eval's --apply_chat_template (the tasks' fewshot_as_multiturn and system apply); `raw`: plain text; null: each task's own. A model without a chat template (or an API model) is refused before anything runs.")
    arms: Arms = Field(default_factory=Arms, description="The three arms' sweeps and settings.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="How API models (api: entries of newer) are asked, scored and priced.")
    costs: CostConfig = Field(default_factory=CostConfig, description="Cost assumptions, recorded with the run; `tunecheck cost` can override each later.")
    # Left out of dumps when empty/null, so jobs without them keep their config; not part of the run id (they weigh
    # costs / draw the report, they change no measurement).
    reference_curves: list[str] = Field(default_factory=list, exclude_if=lambda v: not v, description="Published learning curves the report's learning-curve figure overlays as a labelled layer, so a reader sees where the task sits: banking77, clinic150, trec (Bertsch et al. 2024, Llama-2-7b-80k ICL vs fine-tuning), or all; empty: none. `tunecheck report --reference-curves` overrides it.")
    traffic_mix: dict[str, Annotated[float, Field(gt=0, le=1)]] | None = Field(None, exclude_if=lambda v: v is None, description="Each task's share of the traffic (costs.volume_tokens_per_day, or costs.requests_per_day, is the whole task set's): task (as listed in tasks) → share in (0, 1], every task listed, the shares summing to 1. Each task's costs are computed at its share; the report's task-set table adds them up per strategy. null: equal shares.")
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

    @field_validator("device_map", mode="before")
    @classmethod
    def _device_map(cls, v: Any) -> Any:
        return placement.check_device_map(v)

    @field_validator("max_memory", mode="before")
    @classmethod
    def _max_memory(cls, v: Any) -> Any:
        return placement.check_max_memory(v)

    @model_validator(mode="after")
    def _placement(self) -> Job:
        problem = placement.placement_problem(self.device, self.device_map, self.max_memory)
        if problem is not None:
            raise field_error(problem[1], problem[0])
        return self

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        for i, t in enumerate(v):
            if t in v[:i]:
                raise field_error(f"task {t!r} is listed twice in tasks — remove one", i)
        return v

    @field_validator("reference_curves")
    @classmethod
    def _reference_curves(cls, v: list[str]) -> list[str]:
        from evaluator.analysis.references import references

        try:
            return [r.name for r in references(v)]
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _traffic_mix(self) -> Job:
        mix = self.traffic_mix
        if mix is None:
            return self
        unknown = [t for t in mix if t not in self.tasks]
        if unknown:
            raise field_error(f"{unknown[0]!r} is not one of the job's tasks ({', '.join(self.tasks)}) — use the names "
                              "as listed in tasks", "traffic_mix")
        missing = [t for t in self.tasks if t not in mix]
        if missing:
            raise field_error(f"no share for task {missing[0]!r} — give every task its share (or drop traffic_mix "
                              "for equal shares)", "traffic_mix")
        total = sum(mix.values())
        if abs(total - 1) > 1e-6:
            raise field_error(f"the shares sum to {total:g}, not 1 — each is the task's fraction of the whole traffic",
                              "traffic_mix")
        return self

    @field_validator("newer")
    @classmethod
    def _newer(cls, v: list[str]) -> list[str]:
        for i, m in enumerate(v):
            if m in v[:i]:
                raise field_error(f"model {m!r} is listed twice in newer — remove one", i)
            if is_api(m):
                try:
                    parse_api_spec(m)
                except ApiSpecError as exc:
                    raise field_error(str(exc), i) from None
        return v

    @field_validator("base")
    @classmethod
    def _base(cls, v: str) -> str:
        if is_api(v):
            raise field_error(f"{v!r}: the base model needs weights here (arm A scores it, arm B trains a LoRA "
                              "adapter on it) — put API models in newer")
        return v

    def newer_shots(self) -> list[Shots]:
        return self.arms.newer.shots or self.arms.prompting.shots

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not output_dir): the same job resumes the same run."""
        # `api` is not here: what changes an API model's answers (endpoint, choice scoring) is part of its identity in
        # the run's inputs (identity.model_fingerprint), so jobs without API models keep their fingerprints
        # `device_map` / `max_memory` neither: where the layers sit does not change what they compute, so a run
        # started on one GPU resumes on two (and jobs without them keep their fingerprints)
        # `arms.lora.sweep` neither: an adapter of the sweep equals the one trained alone (tests/test_sweep.py)
        top = {"output_dir", "adapters_dir", "model_cache", "costs", "verdict", "description", "api", "device_map",
               "max_memory", "traffic_mix", "reference_curves"}
        payload = self.model_dump(exclude={**dict.fromkeys(top, True), "arms": {"lora": {"sweep"}}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


# --- one line per validation problem -------------------------------------------------------------------------------


# --- YAML ----------------------------------------------------------------------------------------------------------


def load_job(path: str | Path) -> Job:
    path = Path(path)
    data = load_yaml(path, "job file")
    try:
        return Job.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, str(path))) from None
