"""The trend test and percentiles, checked exactly on synthetic series."""

from __future__ import annotations

import math
import random

import pytest

from stalwart.chaos import Tolerance, fit_trend, percentiles, t_quantile
from stalwart.chaos._soak import trends


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 5, 2.5706), (0.975, 10, 2.2281),
     (0.975, 30, 2.0423), (0.995, 20, 2.8453), (0.975, 1000, 1.9623), (0.95, 3, 2.3534),
     (0.975, 3, 3.1824)],
)  # fmt: skip
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_a_perfect_line_has_its_exact_slope_and_a_zero_width_interval():
    xs = [float(x) for x in range(10)]
    ys = [5.0 + 2.0 * x for x in xs]
    trend = fit_trend(xs, ys, Tolerance(absolute=1.0))
    assert trend.slope == pytest.approx(2.0)
    assert trend.intercept == pytest.approx(5.0)
    assert trend.stderr == pytest.approx(0.0, abs=1e-12)
    assert trend.growth == pytest.approx(18.0)  # slope x span (9)
    assert trend.significant and trend.growing


def test_slope_and_interval_match_a_hand_computed_fit():
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    ys = [1.0, 3.0, 2.0, 5.0, 4.0]
    # mean x 2, mean y 3, sxx 10, sxy 8 -> slope 0.8, intercept 1.4
    # residuals: -0.4, 0.8, -1.0, 1.2, -0.6 -> SSE 3.6; stderr sqrt(3.6 / 3 / 10)
    trend = fit_trend(xs, ys, confidence=0.95)
    assert trend.slope == pytest.approx(0.8)
    assert trend.intercept == pytest.approx(1.4)
    stderr = math.sqrt(3.6 / 3 / 10)
    assert trend.stderr == pytest.approx(stderr)
    t = 3.1824  # t(0.975, 3)
    assert trend.low == pytest.approx(0.8 - t * stderr, abs=1e-4)
    assert trend.high == pytest.approx(0.8 + t * stderr, abs=1e-4)
    assert not trend.significant  # the interval (-0.30, 1.90) holds zero: not a trend


def test_a_flat_noisy_series_is_not_flagged_and_a_slow_leak_in_the_same_noise_is():
    rng = random.Random(42)
    xs = [float(i) for i in range(600)]  # ten minutes, one sample a second
    noise = [rng.gauss(0.0, 2.0) for _ in xs]
    flat = [100.0 + e for e in noise]
    leak = [100.0 + 0.05 * x + e for x, e in zip(xs, noise, strict=True)]  # 3 MB/min
    tolerance = Tolerance(absolute=16.0, relative=0.10)
    assert not fit_trend(xs, flat, tolerance).growing
    leaking = fit_trend(xs, leak, tolerance)
    assert leaking.growing
    assert leaking.low <= 0.05 <= leaking.high  # the interval holds the true slope


def test_a_significant_but_small_growth_is_within_tolerance():
    xs = [float(i) for i in range(100)]
    ys = [50.0 + 0.001 * x for x in xs]  # real, but 0.1 over the window
    trend = fit_trend(xs, ys, Tolerance(absolute=1.0))
    assert trend.significant and not trend.growing


def test_too_few_points_or_no_spread_never_flag():
    assert not fit_trend([1.0, 2.0], [1.0, 100.0]).growing
    assert not fit_trend([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).growing
    with pytest.raises(ValueError):
        fit_trend([1.0], [1.0, 2.0])


def test_soak_trends_skip_the_warmup_and_use_each_metrics_tolerance():
    samples = []
    for i in range(100):
        t = float(i)
        rss = 80.0 if i < 25 else 80.0 + 0.5 * (t - 25)  # leaks 0.5 MB/s after warm-up
        warm = 10.0 * i if i < 25 else 250.0  # grows only during warm-up: ignored
        samples.append({"t": t, "values": {"node.rss_mb": rss, "node.fds": warm}})
    fitted = trends(samples, warmup=0.25)
    assert fitted["node.rss_mb"]["growing"]
    assert fitted["node.rss_mb"]["slope"] == pytest.approx(0.5)
    assert not fitted["node.fds"]["growing"]


def test_a_growing_series_raises_the_soak_growth_alert_and_a_flat_one_does_not():
    from stalwart.chaos._soak import raise_alerts

    fitted = {"node.rss_mb": {"growing": True}, "node.fds": {"growing": False}}
    alerts = raise_alerts(fitted)
    assert {(a["name"], a["severity"], a["status"]) for a in alerts} == {
        ("SoakGrowth", "warning", "firing"),
        ("SoakGrowth", "critical", "firing"),
    }
    assert all(a["labels"]["series"] == "node.rss_mb" for a in alerts)  # only the growing one
    assert raise_alerts({"node.fds": {"growing": False}}) == []


# -- the plateau test (threads): bounded lazy growth passes, a leak fails -------------------

THREADS = Tolerance(absolute=4.0, plateau=True)
WINDOW = [11.0 + i for i in range(35)]  # a 45 s soak's window past its 25 % warm-up


def test_a_lazy_pool_that_fills_up_and_levels_off_passes():
    # 5 threads, then a worker per new concurrency peak up to 12 (7 more: past the 4 allowed
    # over the window), then flat, with anyio's idle workers pruned and respawned as noise
    rng = random.Random(3)
    pool = [min(12, 5 + int((x - 11) / 2)) - (rng.random() < 0.3) * rng.randint(0, 2)
            for x in WINDOW]  # fmt: skip
    trend = fit_trend(WINDOW, pool, THREADS)
    assert trend.significant and trend.growth > trend.allowed  # the old verdict: growing
    assert trend.tail is not None and not trend.tail.growing  # the later half is flat
    assert not trend.growing and trend.settled


def test_one_thread_per_task_that_never_exits_fails():
    per_task = [5.0 + 5 * (x - 11) for x in WINDOW]  # 5 tasks/s, a thread each
    trend = fit_trend(WINDOW, per_task, THREADS)
    assert trend.growing and not trend.settled
    assert trend.tail is not None and trend.tail.slope == pytest.approx(5.0)


def test_a_slow_thread_leak_fails_like_any_slow_leak():
    # a thread every 6 s (one per 30 tasks at 5 tasks/s): 5.6 over the window, 4 allowed;
    # the later half climbs at the same rate, so the plateau test does not excuse it
    slow = [5.0 + int((x - 11) / 6) for x in WINDOW]
    trend = fit_trend(WINDOW, slow, THREADS)
    assert trend.growing
    assert trend.tail is not None and trend.tail.low > 0
    assert trend.tail.growth > trend.tail.allowed  # 0.16/s kept over 34 s: 5.6 > 4


def test_a_pool_still_filling_in_the_later_half_is_flagged_until_it_levels_off():
    # a soak too short for the pool to reach its bound cannot tell it from a leak
    filling = [5.0 + int((x - 11) / 3) for x in WINDOW]
    assert fit_trend(WINDOW, filling, THREADS).growing
    longer = [11.0 + i for i in range(200)]  # the same pool in a longer soak: full at 50
    assert not fit_trend(longer, [min(18.0, 5 + int((x - 11) / 3)) for x in longer],
                         THREADS).growing  # fmt: skip


def test_the_plateau_test_needs_three_later_samples_else_the_whole_window_decides():
    xs = [0.0, 1.0, 2.0, 3.0]  # the later half (x >= 1.5) has 2 samples
    trend = fit_trend(xs, [0.0, 10.0, 20.0, 30.0], THREADS)
    assert trend.tail is not None and trend.tail.n == 2
    assert trend.growing


def test_only_plateau_metrics_are_excused_memory_that_grew_and_stayed_is_not():
    grew_then_flat = [min(12.0, 5 + (x - 11) / 2) for x in WINDOW]
    assert fit_trend(WINDOW, grew_then_flat, Tolerance(absolute=4.0)).growing
    assert fit_trend(WINDOW, grew_then_flat, Tolerance(absolute=4.0)).tail is None
    assert not fit_trend(WINDOW, grew_then_flat, THREADS).growing


def test_soak_trends_judge_threads_by_the_plateau_test():
    samples = [
        {"t": float(i), "values": {
            "support.threads": float(min(14, 2 + i // 2)),  # a pool: full by 24 s
            "node.threads": float(4 + i // 4),  # a leak: one more every 4 s
        }}
        for i in range(46)
    ]  # fmt: skip
    fitted = trends(samples, warmup=0.25)
    pool, leak = fitted["support.threads"], fitted["node.threads"]
    assert not pool["growing"] and pool["settled"] and pool["tail"]["slope"] == 0.0
    assert leak["growing"] and not leak["settled"] and leak["tail"]["low"] > 0
