"""What an `api:` model reference names: an endpoint, a model on it, the price-table provider and the API key's
environment variable.

Two forms (job `newer:` entries, `tunecheck demo --api`):
- ``api:<provider>/<model>``: a hosted provider's OpenAI-compatible endpoint, e.g. ``api:openai/gpt-4o-mini``; the
  key comes from the provider's usual variable (``OPENAI_API_KEY``) and the price from the price table.
- ``api:<http(s) URL of the /v1 base>#<model>``: any OpenAI-compatible server — vLLM, ``transformers serve``,
  Ollama, llama.cpp server, Azure's v1 endpoint — e.g. ``api:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-0.5B``.

The key itself is never part of a reference, a job or a record: only the *name* of the variable that holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PREFIX = "api:"

#: Hosted OpenAI-compatible providers: /v1 base URL and the environment variable their keys usually live in. The
#: provider ids are the price table's (genai-prices), so `api:<provider>/<model>` is priced without further setup.
PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}

#: The variable a URL endpoint's key is read from unless the job names another (api.key_env); a local server
#: usually needs none.
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ApiSpecError(ValueError):
    """An `api:` reference that cannot name an endpoint and a model; the message says how to write one."""


@dataclass(frozen=True)
class ApiModel:
    spec: str  # what the user wrote, e.g. "api:openai/gpt-4o-mini"
    base_url: str  # the OpenAI-compatible /v1 base, without a trailing slash
    model: str  # the model name sent in every request
    provider: str | None  # price-table provider id (hosted providers), None for a URL endpoint
    key_env: str  # the environment variable the key is read from by default

    @property
    def slug(self) -> str:
        """A filesystem-safe short name for unit ids and labels: ``api-<model>`` for a hosted provider,
        ``api-<model>-<host>-<port>`` for a URL endpoint (a path-like model name — `transformers serve` names a model
        by its folder — by its last part), so two endpoints serving the same model stay apart."""
        if self.provider:
            name = self.model.strip("/").replace("/", "--")
        else:
            parts = urlsplit(self.base_url)
            last = self.model.rstrip("/").rsplit("/", 1)[-1] if self.model.startswith(("/", "~", ".")) else self.model
            name = f"{last.replace('/', '--')}-{parts.hostname}" + (f"-{parts.port}" if parts.port else "")
        return ("api-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-."))[:60]

    @property
    def is_loopback(self) -> bool:
        return (urlsplit(self.base_url).hostname or "") in {h.strip("[]") for h in LOOPBACK}

    @property
    def default_endpoint(self) -> str:
        """`chat` for hosted providers (their newer models have no text-completions endpoint), `completions` for
        a URL endpoint (the same raw prompt text a local model is scored on)."""
        return "chat" if self.provider else "completions"


def is_api(spec: str) -> bool:
    return isinstance(spec, str) and spec.strip().startswith(PREFIX)


def parse_api_spec(spec: str) -> ApiModel:
    """The endpoint and model an `api:` reference names, or :class:`ApiSpecError` saying how to write it."""
    s = spec.strip()
    if not s.startswith(PREFIX):
        raise ApiSpecError(f"{spec!r} is not an API model reference (it starts with '{PREFIX}')")
    body = s[len(PREFIX):]
    forms = (f"write api:<provider>/<model> (providers: {', '.join(PROVIDERS)}) or api:<URL of the /v1 base>#<model>, "
             "e.g. api:http://127.0.0.1:8000/v1#my-model")
    if "://" in body:
        url, sep, model = body.partition("#")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiSpecError(f"{spec!r}: {url!r} is not an http(s) URL — {forms}")
        if parts.query or parts.fragment:
            raise ApiSpecError(f"{spec!r}: the URL carries a query string; give the plain /v1 base URL — {forms}")
        if not sep or not model.strip():
            raise ApiSpecError(f"{spec!r}: name the model after '#' (the name the server lists at /v1/models) — {forms}")
        if parts.username or parts.password:
            raise ApiSpecError(f"{spec!r}: credentials in the URL would be stored with the run — put the key in an "
                               "environment variable (api.key_env) instead")
        return ApiModel(s, url.rstrip("/"), model.strip(), None, DEFAULT_KEY_ENV)
    provider, sep, model = body.partition("/")
    if not sep or not provider or not model.strip():
        raise ApiSpecError(f"{spec!r}: {forms}")
    if provider not in PROVIDERS:
        raise ApiSpecError(f"{spec!r}: unknown API provider {provider!r} — use one of {', '.join(PROVIDERS)}, or the "
                           "URL form api:<URL>#<model> for any other OpenAI-compatible endpoint")
    url, key_env = PROVIDERS[provider]
    return ApiModel(s, url, model.strip(), provider, key_env)
