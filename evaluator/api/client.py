"""An OpenAI-compatible endpoint asked the way a long evaluation needs: the `openai` package's transport and errors,
our own retry loop (so every retry, its cause and the wait are recorded), `Retry-After` honoured, a timeout per
request, and a response cache keyed by the endpoint and the full request, so a re-run — or a run killed between two
appends — asks nothing twice and costs nothing.

The API key is read from the environment by the caller and handed to the `openai` client only; it is not part of a
cache key, a cache file, a record or a message. Failures a user can fix (a refused key, an unknown model, an
unreachable endpoint, a request the server rejects) are one-line :class:`~evaluator.errors.UserError`s; transient
ones (429, 5xx, a dropped connection, a timeout) are retried with exponential back-off until `max_retries`.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evaluator.api.spec import ApiModel
from evaluator.errors import UserError
from evaluator.store.files import atomic_write_json

RETRY_STATUS = {408, 409, 429}  # and every 5xx


class ApiUnavailable(UserError):
    """The endpoint kept failing after every retry. Answers already received are kept (cache and results)."""


@dataclass(frozen=True)
class Answer:
    data: dict  # the response JSON
    latency_s: float  # wall seconds of the attempt that succeeded (for a cache hit: the one that filled it)
    retries: int  # failed attempts before it (0 for a cache hit)
    errors: tuple[str, ...]  # what each failed attempt was: "429", "500", "connection", "timeout"
    from_cache: bool
    waited_s: float = 0.0  # seconds slept before the retries (Retry-After or back-off)


def request_key(base_url: str, path: str, body: dict) -> str:
    """The cache key: the endpoint, the path and the full request body (model, prompt, every parameter)."""
    return hashlib.sha256(json.dumps({"base_url": base_url, "path": path, "body": body}, sort_keys=True,
                                     ensure_ascii=False).encode()).hexdigest()


@dataclass
class ResponseCache:
    """One JSON file per answered request under `root` (sharded by the key's first two hex digits)."""

    root: Path

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent, or a torn/foreign file: ask again (and overwrite it)
        return entry if isinstance(entry, dict) and isinstance(entry.get("response"), dict) else None

    def put(self, key: str, request: dict, response: dict, latency_s: float) -> None:
        atomic_write_json(self._path(key), {"request": request, "response": response, "latency_s": latency_s,
                                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a 429/503 response asks us to wait (`retry-after-ms`, `retry-after` as seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class ApiClient:
    """Requests to one endpoint and model. Thread-safe: the evaluation asks `concurrency` items at once."""

    model: ApiModel
    key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 6
    max_wait_s: float = 60.0
    cache: ResponseCache | None = None
    key_env: str | None = None  # the variable the key came from, named in messages
    sleep: Callable[[float], None] = time.sleep
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import openai

        # max_retries=0: the retry loop is ours (recorded per request); "no-key" for key-less local servers
        self._client = openai.OpenAI(base_url=self.model.base_url, api_key=self.key or "no-key", max_retries=0,
                                     timeout=self.timeout_s)

    # --- the endpoint as a whole ------------------------------------------------------------------------------------

    def served_models(self) -> list[dict] | None:
        """The endpoint's /models list (one request, no retries); None when the server has no such list."""
        import openai

        try:
            data = self._client.get("/models", cast_to=object)
        except openai.NotFoundError:
            return None
        except openai.APIStatusError as exc:
            raise self._refused(exc, "listing its models") from None
        except openai.APIConnectionError as exc:
            raise UserError(f"{self.model.spec}: the endpoint {self.model.base_url} is not reachable ({_why(exc)}) — "
                            "start the server or check the URL") from None
        rows = data.get("data") if isinstance(data, dict) else None
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else None

    def check(self) -> dict:
        """Before any work: the endpoint answers, accepts the key and serves the model. Returns the model's /models
        entry ({} when the server lists none); `max_model_len` there (vLLM) is the model's context window."""
        models = self.served_models()
        if models is None:
            return {}
        for m in models:
            if m.get("id") == self.model.model:
                return m
        names = ", ".join(str(m.get("id")) for m in models[:8]) or "none"
        raise UserError(f"{self.model.spec}: the endpoint {self.model.base_url} does not serve a model named "
                        f"{self.model.model!r} (it lists: {names}) — write the name after '#' as /v1/models lists it")

    # --- one request ------------------------------------------------------------------------------------------------

    def post(self, path: str, body: dict) -> Answer:
        """POST `body` to `path` (e.g. "/completions"), from the cache when this exact request was answered before."""
        key = request_key(self.model.base_url, path, body)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Answer(hit["response"], float(hit.get("latency_s") or 0.0), 0, (), True)
        errors: list[str] = []
        waited = 0.0
        for attempt in range(self.max_retries + 1):
            t0 = time.perf_counter()
            try:
                data = self._client.post(path, body=body, cast_to=object)
            except Exception as exc:  # noqa: BLE001 - sorted into transient (retried) and fixable (raised) below
                kind, wait = self._transient(exc, attempt)
                errors.append(kind)
                if attempt == self.max_retries:
                    raise ApiUnavailable(
                        f"{self.model.spec}: {path} failed {attempt + 1} times (last: {kind}: {_why(exc)}) — the "
                        "answers received so far are kept; run the job again to resume, or raise api.max_retries"
                    ) from None
                self.sleep(wait)
                waited += wait
                continue
            latency = time.perf_counter() - t0
            if not isinstance(data, dict):
                raise UserError(f"{self.model.spec}: {path} answered with something other than a JSON object — is "
                                f"{self.model.base_url} an OpenAI-compatible /v1 base URL?")
            if self.cache is not None:
                self.cache.put(key, {"base_url": self.model.base_url, "path": path, "body": body}, data, latency)
            return Answer(data, latency, attempt, tuple(errors), False, round(waited, 3))
        raise AssertionError("unreachable")  # pragma: no cover

    def _transient(self, exc: Exception, attempt: int) -> tuple[str, float]:
        """(what failed, seconds to wait) for a failure worth retrying; anything else is raised as one line."""
        import openai

        backoff = min(self.max_wait_s, 0.5 * 2 ** attempt) * (0.75 + 0.5 * random.random())
        if isinstance(exc, openai.APITimeoutError):
            return "timeout", backoff
        if isinstance(exc, openai.APIConnectionError):
            return "connection", backoff
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in RETRY_STATUS or status >= 500:
                ra = retry_after_seconds(exc.response.headers)
                if ra is not None and ra > self.max_wait_s:
                    raise ApiUnavailable(f"{self.model.spec}: the endpoint asks to wait {ra:.0f} s (HTTP {status}, "
                                         f"Retry-After), above api.max_wait_s = {self.max_wait_s:g} s — answers so far "
                                         "are kept; run the job again later") from None
                return str(status), (ra if ra is not None else backoff)
            raise self._refused(exc, "the request") from None
        raise exc

    def _refused(self, exc: Any, what: str) -> UserError:
        status = exc.status_code
        var = self.key_env or self.model.key_env
        if status in (401, 403):
            how = (f"set a valid key in ${var}" if self.key else f"the endpoint needs a key: set ${var} (or name "
                   "another variable in api.key_env)")
            return UserError(f"{self.model.spec}: the endpoint refused the API key for {what} (HTTP {status}) — {how}")
        if status == 404:
            return UserError(f"{self.model.spec}: {self.model.base_url} has no model {self.model.model!r} or no such "
                             f"path for {what} (HTTP 404: {_why(exc)}) — check the URL (the /v1 base) and the model name")
        return UserError(f"{self.model.spec}: the endpoint rejected {what} (HTTP {status}: {_why(exc)})")


def _why(exc: Any) -> str:
    """The server's error message (OpenAI's {"error": {"message": ...}} or FastAPI's {"detail": ...}), one line."""
    body = getattr(exc, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = (err.get("message") or err.get("detail")) if isinstance(err, dict) else err
    text = str(msg or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
