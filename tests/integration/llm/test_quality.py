"""GD-1 evidence: the evaluation set scores both personas through the real client path."""

from __future__ import annotations

from stalwart.llm import model_client
from stalwart.llm._evalset import EVAL_SET, evaluate

from .conftest import providers


async def test_eval_set_scores_strong_above_weak(sim):
    assert len(EVAL_SET) >= 50
    strong = model_client("sim:strong", providers=providers(sim), breaker=None)
    weak = model_client("sim:weak", providers=providers(sim), breaker=None)
    try:
        s = await evaluate(strong, timeout=10)
        w = await evaluate(weak, timeout=10)
    finally:
        await strong.aclose()
        await weak.aclose()
    assert s.score == 1.0, s.failures
    assert 0.5 < w.score < s.score  # measurably worse, still useful as a fallback
    hard = {i.prompt for i in EVAL_SET if i.difficulty == "hard"}
    assert set(w.failures) <= hard  # the weak persona only misses hard items
