"""The benchmark's figures, their goals and the README table: pure functions, no I/O but strings.

A goal is written "<= 5" (the figure's unit is the last part of its key: ms, s, mb, pct, or a rate).
Goals marked "issue 13" come from that issue's table; the others are the benchmark's own, chosen before
measuring, where the issue names a figure without a number.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

README_START = "<!-- bench:table:start -->"
README_END = "<!-- bench:table:end -->"

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True, slots=True)
class Goal:
    """What one figure should be, and how it is shown."""

    key: str
    op: str
    value: float
    unit: str
    label: str
    source: str = "issue 13"

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    def met(self, figure: float) -> bool:
        """Say whether `figure` reaches the goal."""
        return _OPS[self.op](figure, self.value)


GOALS: tuple[Goal, ...] = (
    Goal("bot_cpu_ms_per_job", "<=", 5, "ms", "bot CPU per job (bot process alone, 200 in flight)"),
    Goal("jobs_per_s_200", ">=", 200, "jobs/s", "jobs/s through the bot, 200 in flight"),
    Goal("jobs_per_s_500", ">=", 200, "jobs/s", "jobs/s through the bot, 500 in flight"),
    Goal("loop_lag_p99_ms_500", "<", 20, "ms", "event-loop lag p99, 500 in flight"),
    Goal("added_latency_p50_ms_1", "<=", 10, "ms", "added latency p50, 1 in flight", "bench"),
    Goal("added_latency_p99_ms_1", "<=", 100, "ms", "added latency p99, 1 in flight", "bench"),
    Goal("added_latency_p50_ms_200", "<=", 10, "ms", "added latency p50, 200 in flight"),
    Goal("rss_growth_mb_500mb_output", "<", 64, "MB", "RSS growth while one 500 MB output is delivered"),
    Goal("rss_mb_1000_queued", "<=", 256, "MB", "RSS with 1,000 jobs waiting", "bench"),
    Goal("rss_mb_after_500", "<=", 256, "MB", "RSS once the 500 in flight are done", "bench"),
    Goal("cpu_pct_1000_queued", "<", 1, "%", "CPU with 1,000 jobs waiting"),
    Goal("idle_requests_per_s", "<=", 0.1, "req/s", "HTTP requests per second, connected and idle", "bench"),
    Goal("rest_requests_per_job", "<=", 3, "req", "Discord REST requests per job that did not wait"),
    Goal("ready_to_usable_s", "<", 1, "s", "READY -> first command answered"),
)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile `pct` (0-100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def judge(figures: Mapping[str, Any], goals: Sequence[Goal] = GOALS) -> tuple[dict[str, str], dict[str, bool]]:
    """The `goals` and `met` objects of the JSON line, for the goals whose figure was measured."""
    measured = [g for g in goals if isinstance(figures.get(g.key), int | float) and not math.isnan(figures[g.key])]
    return {g.key: str(g) for g in measured}, {g.key: g.met(float(figures[g.key])) for g in measured}


def shown(value: Any, unit: str) -> str:
    """A figure with its unit, as the report and the README print it."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "not measured"
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"
    return f"{number} {unit}" if unit != "%" else f"{number} %"


def table(figures: Mapping[str, Any], goals: Sequence[Goal] = GOALS) -> str:
    """The README's performance table (markdown), one row per goal."""
    _, met = judge(figures, goals)
    rows = ["| figure | measured | goal | met |", "| --- | --- | --- | --- |"]
    for goal in goals:
        verdict = "-" if goal.key not in met else "yes" if met[goal.key] else "**no**"
        goal_text = f"{goal.op} {shown(goal.value, goal.unit)}" + (" (bench)" if goal.source == "bench" else "")
        rows.append(f"| {goal.label} | {shown(figures.get(goal.key), goal.unit)} | {goal_text} | {verdict} |")
    return "\n".join(rows)


def rewrite_readme(text: str, new_table: str) -> str:
    """`text` with what lies between the table markers replaced by `new_table`; ValueError without markers."""
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"README.md needs exactly one {README_START} ... {README_END} block")
    return pattern.sub(lambda _: f"{README_START}\n{new_table}\n{README_END}", text)
