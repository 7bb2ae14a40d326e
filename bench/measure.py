"""Side-by-side measurement: a target and its baseline in alternating rounds (A B B A)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import wrk


@dataclass
class Options:
    seconds: float
    rounds: int
    connections: int


@dataclass
class Row:
    name: str
    baseline: str
    rate: float
    baseline_rate: float
    p99_ms: float
    baseline_p99_ms: float = float("nan")
    goal: str = ""
    rounds: list[dict[str, float]] = field(default_factory=list)
    # Each round's target against its own baseline (the login storms, each with the bound
    # timed just before it): the ratio is the median of those, not a ratio of medians taken
    # from different rounds.
    paired: bool = False

    @property
    def ratio(self) -> float:
        if self.paired and self.rounds:
            return statistics.median(r["target"] / r["baseline"] for r in self.rounds)
        return self.rate / self.baseline_rate if self.baseline_rate else float("nan")


Side = Callable[[], wrk.Result]


def alternate(name: str, target: Side, baseline_name: str, baseline: Side, rounds: int) -> Row:
    """Run A B B A ``rounds`` times and keep the medians of each side."""
    sides: dict[str, list[wrk.Result]] = {"a": [], "b": []}
    for _ in range(rounds):
        for side in ("a", "b", "b", "a"):
            result = baseline() if side == "a" else target()
            if result.errors:
                which = baseline_name if side == "a" else name
                raise RuntimeError(f"{which}: {result.errors} non-2xx answers")
            sides[side].append(result)
    return Row(
        name=name,
        baseline=baseline_name,
        rate=statistics.median(r.rate for r in sides["b"]),
        baseline_rate=statistics.median(r.rate for r in sides["a"]),
        p99_ms=statistics.median(r.p99_ms for r in sides["b"]),
        baseline_p99_ms=statistics.median(r.p99_ms for r in sides["a"]),
        rounds=[
            {"baseline": a.rate, "target": b.rate}
            for a, b in zip(sides["a"], sides["b"], strict=True)
        ],
    )


def measure(
    options: Options,
    name: str,
    target: tuple[str, wrk.Load],
    baseline_name: str,
    baseline: tuple[str, wrk.Load],
    goal: str = "",
) -> Row:
    """Two URLs, each driven by wrk on core 1 at full speed."""

    def side(url: str, load: wrk.Load) -> Side:
        return lambda: wrk.run(
            url, load, seconds=options.seconds, connections=options.connections, core=1
        )

    row = alternate(name, side(*target), baseline_name, side(*baseline), options.rounds)
    row.goal = goal
    return row
