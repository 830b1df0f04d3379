"""The cost model: inputs (the one cost schema), workload, self-hosting, API prices and cost, break-even, the
article's scenario, and costs of a stored run. Pure (no torch, no model code).

Cost model: self-hosted vs API inference, LoRA training amortised over base-model refreshes, break-even volumes.

Pure arithmetic on stored measurements: no torch, no transformers, no network. Every input has a default in
:class:`CostInputs` and can be overridden; every output carries ``how`` strings that spell out the formula with
the numbers substituted, so a report can show *how* each figure was obtained.

Model (all costs are USD; a month is ``days_per_month`` days)
----------------------------------------------------------------
**Workload.** The traffic is a number of task requests per day. Users think in tokens/day (the article's
"50M tokens/day"), so ``requests/day = volume_tokens_per_day / zero-shot request tokens``, where the zero-shot
request (:class:`RequestSize`) is the request as the user would send it without demonstrations: the task's
instruction + the input + the *reference* answer — one size for every arm (API tiktoken counts where the run has
them, else the base model's tokens). A many-shot arm serves the *same* requests/day but sends more tokens per request.
``CostInputs.requests_per_day`` sets the traffic directly.

**Self-hosted inference** (per arm). ``throughput = requests / eval_seconds`` as measured on ``gpus`` GPUs, where
``eval_seconds`` is per-request work only: the one-off prefix encoding (``prefix_seconds``) and the warm-up are
recorded apart. tunecheck's many-shot engine reuses the shared demo prefix, so the measurement is the
*prefix-cached* throughput. The *uncached* throughput comes from the measured prefix encoding — every request would
encode the prefix again::

    uncached seconds per request = eval_seconds / requests + prefix_seconds

Where no prefix time was measured it is a FLOP-proportional estimate (labelled so):
``uncached ≈ cached × (prompt - shared prefix + output) / (prompt + output)``. The prefix itself is encoded once per
serving replica per cache lifetime (``prefix_cache_hours``) and priced as a fixed monthly part. If a measurement was
taken *without* prefix reuse (``ArmMeasurement.prefix_cached=False``) the cached figure is the estimate instead
(measured ÷ work ratio). A throughput measured on a CPU is not a GPU serving figure (every line says so); state a
GPU figure with ``ArmMeasurement.stated_rps`` (``tunecheck cost --throughput``). The formulas::

    $/request = gpu_hourly_usd × gpus / (throughput × 3600 × utilisation)
    monthly   = fixed + $/request × requests/day × days_per_month
    fixed     = self-host ops (selfhost_ops_hours_per_month × engineering_usd_per_hour)
                + amortised training (arms that need training: arm "B" or train_seconds > 0)
    training per retrain = train_seconds/3600 × gpu_hourly_usd × train_processes
                           + engineering_hours_per_training × rate
    (train_processes: how many processes/GPUs trained the adapter — independent of the serving GPUs)
    amortised training   = training per retrain / refresh_months   (every new base release means retraining)

Costs are linear in volume with fractional GPUs (no rounding up to whole GPUs: the number of GPUs the volume
needs is reported alongside). Training runs the GPUs flat out, so utilisation does not apply to it.

**API inference** (per arm: "rent the API model with the same prompts" — a LoRA adapter on our own base cannot
run on the API model, so for arm B this line is the API model prompted like arm B, *without* the adapter)::

    cached tokens = cacheable part of the shared prefix (see ``api_cached_tokens``)
    $/request = (prompt - cached) × input + cached × cached_input + output × output     (prices per token)
    monthly   = $/request × requests/day × days_per_month

Caching rule (OpenAI automatic prompt caching): prompts of at least 1,024 tokens are cached, and a cache hit
covers the longest previously seen prefix in steps of 128 tokens from 1,024. The part shared by every request is
the demonstration prefix, so ``cached = 1024 + 128·floor((prefix - 1024)/128)`` when ``prefix >= 1024`` and a
cached-input price exists, else 0. Steady traffic is assumed to keep the cache warm (the first request after an
eviction pays full price; negligible at volume). For other providers the same rule is applied with the
``ApiPrices.cache_min_tokens`` / ``cache_increment_tokens`` given (cache-write surcharges are ignored).

**An option served by a hosted API** (arm C with an ``api:`` model spec; ``ArmMeasurement.api_usage``) is one more
option, priced as what it is — renting that API — from the usage *measured* in the run (the responses' usage fields,
per item = per user request) at *its own* prices (the price table's entry for its model, the job's per-M prices on
top or alone)::

    $/request = ((input - cached) × input + cached × cached_input + output × output) / 1M    (measured tokens)
    monthly   = $/request × requests/day × days_per_month                                   (no GPU, training, ops)

The cached tokens are those the API billed as cached, not the rule above; without a cached-input price they pay the
input price. An option with no price stays in the report with its quality and "not priced" (never $0). It has no
"same prompts" line (it is an API); each self-hosted option gets a break-even against it, and the threshold below
reads the cheapest measured API option when there is one. ``ArmCost.monthly_usd`` is the one monthly figure of
any option as it is served (self-hosted prefix-cached, or its measured API usage).

**Break-even.** Every option is a line ``monthly = F + v × requests/day × days``; two lines cross at
``requests/day* = (F_b - F_a) / ((v_a - v_b) × days)``, reported in requests/day and tokens/day (× baseline).
``None`` when they never cross at a non-negative volume (one option is cheaper at every volume), ``math.inf`` for
parallel lines with different fixed costs (they would meet only at infinite volume), ``0.0`` for identical lines.

**Article threshold.** Annual API spend (API monthly × 12) against ``self_host_threshold_usd_per_year`` (the
article's $500K/year): above it self-hosting is worth examining on cost; below it the API is the default. The
spend is read from the cheapest measured API option, else the cheapest "same prompts" line (the sentence says which).
"""
