"""Statistics over per-item results: point estimates with 95% confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n, "ci_method": self.method}


def wilson(successes: int, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval: well-behaved for small n and proportions near 0 or 1 (unlike the normal one)."""
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "wilson")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the bounds are p exactly; rounding alone would put them a hair inside (5.6e-17 above 0 at n=3).
    return Estimate(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), n, "wilson")


def bootstrap_mean(values: list[float], seed: int = 0, reps: int = 2000) -> Estimate:
    """Percentile bootstrap of the mean, for non-binary scores."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(reps, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size), "bootstrap")


def estimate(scores: list[float]) -> Estimate:
    """Wilson for 0/1 scores (accuracy, exact match), bootstrap otherwise."""
    if all(s in (0.0, 1.0) for s in scores):
        return wilson(int(sum(scores)), len(scores))
    return bootstrap_mean(scores)
