"""A fixed evaluation set with checkable answers, and the scorer (evidence for GD-1).

Each item is a prompt and the answer it must contain. The set mixes easy and
hard items so that a weaker model scores measurably lower than a stronger one;
:func:`evaluate` runs any :class:`ModelClient` over it and reports the score.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence

from stalwart.llm._types import Message, ModelClient, ModelRequest

__all__ = ["EVAL_SET", "EvalItem", "EvalReport", "evaluate", "score_answer"]


@dataclasses.dataclass(frozen=True, slots=True)
class EvalItem:
    prompt: str
    expected: str
    difficulty: str  # "easy" or "hard"


CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasilia",
    "Kenya": "Nairobi",
    "Norway": "Oslo",
    "Egypt": "Cairo",
    "Peru": "Lima",
    "Poland": "Warsaw",
    "Turkey": "Ankara",
    "Vietnam": "Hanoi",
    "Chile": "Santiago",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Greece": "Athens",
}
_HARD_CAPITALS = {"Australia", "Canada", "Turkey", "Brazil"}


def _build() -> tuple[EvalItem, ...]:
    items: list[EvalItem] = []
    for country, city in CAPITALS.items():
        level = "hard" if country in _HARD_CAPITALS else "easy"
        items.append(EvalItem(f"What is the capital of {country}?", city, level))
    for a, b in [(7, 8), (12, 11), (9, 9), (15, 4), (21, 3)]:
        items.append(EvalItem(f"What is {a} * {b}?", str(a * b), "easy"))
    for a, b in [(127, 43), (389, 217), (764, 58), (913, 472), (248, 369)]:
        items.append(EvalItem(f"What is {a} * {b}?", str(a * b), "hard"))
    for a, b in [(45, 37), (128, 256), (999, 1), (1234, 4321), (77, 88)]:
        items.append(EvalItem(f"What is {a} + {b}?", str(a + b), "easy"))
    for word in ("agent", "queue", "retry", "stalwart", "supervisor"):
        level = "hard" if len(word) > 6 else "easy"
        items.append(EvalItem(f"Reverse the word '{word}'.", word[::-1], level))
    for word, letter in [
        ("banana", "a"),
        ("mississippi", "s"),
        ("committee", "t"),
        ("bookkeeper", "e"),
        ("occurrence", "c"),
    ]:
        count = word.count(letter)
        level = "hard" if len(word) > 8 else "easy"
        items.append(
            EvalItem(f"How many times does '{letter}' occur in '{word}'?", str(count), level)
        )
    for numbers in ([5, 3, 9], [12, 7, 30, 1], [44, 2, 19, 8, 27]):
        level = "hard" if len(numbers) > 4 else "easy"
        listed = ", ".join(map(str, numbers))
        items.append(
            EvalItem(
                f"Sort these numbers ascending: {listed}.",
                ", ".join(map(str, sorted(numbers))),
                level,
            )
        )
    for c in (0, 37, 100, -40, 25):
        items.append(
            EvalItem(
                f"Convert {c} degrees Celsius to Fahrenheit.",
                f"{c * 9 / 5 + 32:g}",
                "easy" if c in (0, 100) else "hard",
            )
        )
    return tuple(items)


EVAL_SET: tuple[EvalItem, ...] = _build()


def score_answer(answer: str, expected: str) -> bool:
    """True if ``expected`` appears in ``answer`` as a whole token (case-insensitive)."""
    pattern = r"(?<![\w.])" + re.escape(expected.lower()) + r"(?![\w])"
    return re.search(pattern, answer.lower()) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class EvalReport:
    model: str
    total: int
    correct: int
    failures: tuple[str, ...]

    @property
    def score(self) -> float:
        return self.correct / self.total if self.total else 0.0


async def evaluate(
    client: ModelClient,
    items: Sequence[EvalItem] = EVAL_SET,
    *,
    timeout: float = 30.0,
    concurrency: int = 8,
) -> EvalReport:
    """Ask ``client`` every item and score the answers."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: EvalItem) -> bool:
        async with gate:
            request = ModelRequest(messages=(Message("user", item.prompt),), max_tokens=64)
            response = await client.complete(request, timeout=timeout)
            return score_answer(response.message.content, item.expected)

    results = await asyncio.gather(*(one(i) for i in items))
    failures = tuple(i.prompt for i, ok in zip(items, results, strict=True) if not ok)
    return EvalReport(client.name, len(items), sum(results), failures)
