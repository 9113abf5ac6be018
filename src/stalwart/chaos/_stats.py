"""The statistics of load and soak runs: latency percentiles and the trend test.

The trend test is an ordinary least-squares fit of ``y = a + b*x`` with a
two-sided confidence interval on the slope ``b`` from Student's t distribution
(``n - 2`` degrees of freedom). A series is *growing* when the interval lies
entirely above zero (the growth is statistically real) **and** the growth the
fitted slope projects over the sampled window exceeds a tolerance (the growth
matters). Both are needed: a long soak makes tiny, harmless slopes significant,
and a short noisy one makes large slopes insignificant. Two samples (first vs
last) are never compared directly.

A metric whose :class:`Tolerance` says ``plateau=True`` (threads) is a pool
that may grow lazily up to a bound: asyncio's default executor adds a worker
per concurrent job up to ``min(32, cpus + 4)``, anyio up to 40, and a loaded
machine reaches those peaks later in a run. For such a metric the growth above
counts only while the series is *still climbing in the later half* of the
window: the later half, fitted on its own, must have a slope whose interval
lies above zero and which, kept over the whole window, would add more than the
tolerance (the tolerance pro rata to the later half's span). A pool that
filled up and levelled off fails that; a leak (a thread per task, or one every
so often, never exiting) climbs at the same rate in both halves and passes it.
With fewer than 3 samples in the later half the whole window's verdict stands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

__all__ = ["Tolerance", "Trend", "fit_trend", "percentiles", "t_cdf", "t_quantile"]


def percentiles(
    values: Sequence[float], qs: Sequence[int] = (50, 95, 99)
) -> dict[str, float | None]:
    """Nearest-rank percentiles (``{"p50": …}``); None for each when there are no values."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        if not ordered:
            out[f"p{q}"] = None
            continue
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        out[f"p{q}"] = ordered[rank - 1]
    return out


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (integer) degrees of freedom, exactly.

    The finite series of Abramowitz & Stegun 26.7.3 (odd ``df``) and 26.7.4
    (even ``df``), which keeps the package free of scipy.
    """
    if df < 1:
        raise ValueError("Student's t needs at least one degree of freedom")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        a = 2 / math.pi * (theta + math.sin(theta) * total) if df > 1 else 2 * theta / math.pi
    else:
        total, term = 0.0, 1.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= c2 * (2 * k - 1) / (2 * k)
        a = math.sin(theta) * total
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`, to 1e-9)."""
    if not 0.0 < p < 1.0:
        raise ValueError("a quantile needs 0 < p < 1")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-9:
            break
    return (low + high) / 2


@dataclasses.dataclass(frozen=True, slots=True)
class Tolerance:
    """How much growth over a soak window is acceptable for one metric.

    The allowed growth is ``max(absolute, relative * mean)``: e.g. RSS may
    drift by 5 % or 8 MiB, file descriptors by 4. ``plateau`` marks a metric
    that grows lazily to a bound (a thread pool): it is flagged only while its
    later half still climbs (the plateau test in the module docstring).
    """

    absolute: float = 0.0
    relative: float = 0.0
    plateau: bool = False

    def allowed(self, mean: float) -> float:
        return max(self.absolute, self.relative * abs(mean))


@dataclasses.dataclass(frozen=True, slots=True)
class Trend:
    """A fitted trend: slope per unit of x with its confidence interval, and the verdict."""

    n: int
    slope: float
    intercept: float
    stderr: float
    low: float
    high: float
    confidence: float
    mean: float
    span: float
    growth: float
    allowed: float
    significant: bool
    growing: bool
    tail: Trend | None = None
    """For a ``plateau`` metric: the later half of the window fitted alone (its
    ``allowed`` is the tolerance pro rata to its span); None for other metrics."""

    @property
    def settled(self) -> bool:
        """The whole window grew past the tolerance, but the later half no longer climbs:
        a pool that filled up, not a leak."""
        return self.significant and self.growth > self.allowed and not self.growing

    def as_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "settled": self.settled}


PLATEAU_TAIL_FROM = 0.5
"""The plateau test's later part starts at this share of the window (the later half)."""


def fit_trend(
    xs: Sequence[float],
    ys: Sequence[float],
    tolerance: Tolerance = Tolerance(),
    *,
    confidence: float = 0.95,
) -> Trend:
    """Fit ``ys`` against ``xs`` (see the module docstring for the verdict).

    ``growth`` is ``slope * span`` (what the trend adds over the window);
    with fewer than 3 points, or no spread in ``xs``, nothing is flagged. With
    ``tolerance.plateau`` the later half is fitted too (``tail``) and the series
    is growing only if it still climbs there.
    """
    if len(xs) != len(ys):
        raise ValueError("fit_trend needs as many x as y values")
    whole = _fit(xs, ys, tolerance, confidence)
    if not tolerance.plateau or whole.span == 0:
        return whole
    middle = min(xs) + whole.span * PLATEAU_TAIL_FROM
    later = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= middle]
    tail_span = (max(x for x, _ in later) - min(x for x, _ in later)) if later else 0.0
    # the tolerance pro rata: the later half may add what the whole window may,
    # times its share of the window (so a steady leak reads the same in both)
    tail = _fit(
        [x for x, _ in later],
        [y for _, y in later],
        Tolerance(absolute=whole.allowed * tail_span / whole.span),
        confidence,
    )
    climbing = tail.growing if tail.n >= 3 else whole.growing  # too few to judge: the whole
    return dataclasses.replace(whole, growing=whole.growing and climbing, tail=tail)


def _fit(
    xs: Sequence[float], ys: Sequence[float], tolerance: Tolerance, confidence: float
) -> Trend:
    """The least-squares fit and the plain verdict (interval above zero, growth over
    the tolerance)."""
    n = len(xs)
    mean_y = sum(ys) / n if n else 0.0
    if n < 3:
        return Trend(n, 0.0, mean_y, math.inf, -math.inf, math.inf, confidence, mean_y, 0.0,
                     0.0, tolerance.allowed(mean_y), False, False)  # fmt: skip
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    span = max(xs) - min(xs)
    if sxx == 0:
        return Trend(n, 0.0, mean_y, math.inf, -math.inf, math.inf, confidence, mean_y, 0.0,
                     0.0, tolerance.allowed(mean_y), False, False)  # fmt: skip
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    stderr = math.sqrt(residual / (n - 2) / sxx)
    t = t_quantile(0.5 + confidence / 2, n - 2)
    low, high = slope - t * stderr, slope + t * stderr
    growth = slope * span
    allowed = tolerance.allowed(mean_y)
    significant = low > 0
    return Trend(
        n=n,
        slope=slope,
        intercept=intercept,
        stderr=stderr,
        low=low,
        high=high,
        confidence=confidence,
        mean=mean_y,
        span=span,
        growth=growth,
        allowed=allowed,
        significant=significant,
        growing=significant and growth > allowed,
    )
