"""The job's `api:` section: how API models (`api:` entries of `newer`) are asked, scored, counted and priced.

One section serves every API model of the job. The key itself never appears here: `key_env` names the environment
variable that holds it. Settings that change answers (`endpoint`, `choice_scoring`) are part of each API model's
identity in the run (a change recomputes its units); the others (concurrency, timeouts, retries, cache, prices)
change how the answers are fetched or priced, never what they are."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from evaluator.config.validation import _Strict, field_error
from evaluator.costs.pricing import api_model_problem

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiSettings(_Strict):
    """How the job's API models are asked (see README "API models")."""

    key_env: str | None = Field(None, description="Name of the environment variable that holds the API key (never the key itself); null: the provider's usual one (OPENAI_API_KEY for api:openai/… and for URL endpoints; a local server usually needs none).")
    endpoint: Literal["auto", "completions", "chat"] = Field("auto", description="Which endpoint is asked: completions (the raw prompt text, as a local model sees it), chat (the prompt as one user message); auto: chat for api:<provider>/…, completions for a URL endpoint.")
    choice_scoring: Literal["auto", "logprobs", "generate"] = Field("auto", description="How choice tasks are scored over the API: logprobs (each choice's log-probability: completions with echo, or chat top_logprobs for single-token labels), generate (greedy answer matched to a choice); auto: logprobs where the endpoint returns them, else generate — one method per unit, recorded.")
    concurrency: Annotated[int, Field(ge=1, le=64)] = Field(4, description="Requests in flight at once.")
    timeout_s: Annotated[float, Field(gt=0)] = Field(60.0, description="Seconds one request may take before it is retried.")
    max_retries: Annotated[int, Field(ge=0, le=20)] = Field(6, description="Retries of a request after 429, 5xx, a timeout or a dropped connection (exponential back-off, Retry-After honoured).")
    max_wait_s: Annotated[float, Field(gt=0)] = Field(60.0, description="Longest wait before one retry; a Retry-After above it stops the run (answers so far are kept).")
    context_window: Annotated[int, Field(ge=16)] | None = Field(None, description="The API model's context window in tokens, for shots: max and the fit check; null: the price table's, or the server's max_model_len (vLLM), else unchecked.")
    price_as: str | None = Field(None, description="Price an endpoint the price table does not know as this <provider>/<model> (e.g. openai/gpt-4o-mini); null: the table's price for the model itself.")
    input_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Your API input price, $ per million tokens (with output_usd_per_m: an endpoint the table does not know).")
    cached_input_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Your API cached-input price, $ per million tokens; null: the table's.")
    output_usd_per_m: Annotated[float, Field(ge=0)] | None = Field(None, description="Your API output price, $ per million tokens.")
    cache: bool = Field(True, description="Keep every answer in a response cache keyed by endpoint + full request, so re-runs ask (and cost) nothing.")
    cache_dir: str | None = Field(None, description="Where the response cache lives; null: $TUNECHECK_CACHE/api, else ~/.cache/tunecheck/api.")

    @field_validator("key_env")
    @classmethod
    def _key_env(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not ENV_NAME.match(v):
            raise field_error(f"{_shown(v)} is not an environment variable name — put the key in the environment and "
                              "name the variable here, e.g. key_env: OPENAI_API_KEY")
        if v.startswith(("sk-", "sk_")) or len(v) > 64:
            raise field_error("this looks like an API key, not a variable name — never write the key in the job: "
                              "export it (e.g. OPENAI_API_KEY=...) and write key_env: OPENAI_API_KEY")
        return v

    @field_validator("price_as")
    @classmethod
    def _price_as(cls, v: str | None) -> str | None:
        if v is None:
            return v
        provider, sep, model = v.partition("/")
        if not sep or not provider or not model:
            raise field_error(f"{v!r}: write <provider>/<model> as the price table names them, e.g. openai/gpt-4o-mini")
        problem = api_model_problem(model, provider)
        if problem is not None:
            raise field_error(problem[1])
        return v

    @model_validator(mode="after")
    def _prices_pair(self) -> "ApiSettings":
        if (self.input_usd_per_m is None) != (self.output_usd_per_m is None):
            raise field_error("give both input_usd_per_m and output_usd_per_m (or neither: the price table's)")
        return self


def _shown(v: str) -> str:
    """A rejected value shown without echoing what may be a secret in full."""
    return repr(v) if len(v) <= 12 else repr(v[:4] + "…")
