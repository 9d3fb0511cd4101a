"""The benchmark's pure parts: percentiles, goals and the README table (nothing here is timed)."""

from __future__ import annotations

import math

import pytest

from bench.figures import GOALS, README_END, README_START, Goal, judge, percentile, rewrite_readme, table

REQUIRED = {
    "bot_cpu_ms_per_job",
    "jobs_per_s_200",
    "jobs_per_s_500",
    "loop_lag_p99_ms_500",
    "added_latency_p50_ms_1",
    "added_latency_p99_ms_1",
    "added_latency_p50_ms_200",
    "rss_growth_mb_500mb_output",
    "rss_mb_1000_queued",
    "rss_mb_after_500",
    "cpu_pct_1000_queued",
    "idle_requests_per_s",
    "rest_requests_per_job",
    "ready_to_usable_s",
}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7
    assert percentile([1.0, 1000.0], 50) == 1  # the slow half does not leak into the median


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_every_required_figure_has_a_goal() -> None:
    assert {goal.key for goal in GOALS} == REQUIRED


@pytest.mark.parametrize(
    ("goal", "figure", "met"),
    [
        (Goal("x", "<=", 5, "ms", "x"), 5.0, True),
        (Goal("x", "<=", 5, "ms", "x"), 5.01, False),
        (Goal("x", "<", 20, "ms", "x"), 20.0, False),
        (Goal("x", ">=", 200, "jobs/s", "x"), 200.0, True),
        (Goal("x", ">=", 200, "jobs/s", "x"), 199.9, False),
    ],
)
def test_goal_check(goal: Goal, figure: float, met: bool) -> None:
    assert goal.met(figure) is met


def test_judge_covers_only_measured_figures() -> None:
    figures = {"bot_cpu_ms_per_job": 4.0, "jobs_per_s_200": 59.0, "ready_to_usable_s": math.nan, "other": 1}
    goals, met = judge(figures)
    assert goals == {"bot_cpu_ms_per_job": "<= 5", "jobs_per_s_200": ">= 200"}
    assert met == {"bot_cpu_ms_per_job": True, "jobs_per_s_200": False}


def test_table_shows_figure_goal_and_verdict() -> None:
    text = table({"bot_cpu_ms_per_job": 12.5, "jobs_per_s_200": 250.0, "idle_requests_per_s": 0.0})
    lines = text.splitlines()
    assert lines[0] == "| figure | measured | goal | met |"
    assert len(lines) == 2 + len(GOALS)
    assert "| bot CPU per job (bot process alone, 200 in flight) | 12.5 ms | <= 5 ms | **no** |" in lines
    assert "| jobs/s through the bot, 200 in flight | 250 jobs/s | >= 200 jobs/s | yes |" in lines
    assert "| HTTP requests per second, connected and idle | 0 req/s | <= 0.1 req/s (bench) | yes |" in lines
    assert "| READY -> first command answered | not measured | < 1 s | - |" in lines


def test_rewrite_readme_replaces_only_the_marked_table() -> None:
    readme = f"# Bot\n\n## Performance\n\nintro\n\n{README_START}\n| old | table |\n{README_END}\n\nafter\n"
    rewritten = rewrite_readme(readme, "| new |")
    assert rewritten == f"# Bot\n\n## Performance\n\nintro\n\n{README_START}\n| new |\n{README_END}\n\nafter\n"
    assert rewrite_readme(rewritten, "| new |") == rewritten


def test_rewrite_readme_without_markers_says_what_is_missing() -> None:
    with pytest.raises(ValueError) as caught:
        rewrite_readme("# Bot\n\nno table here\n", "| new |")
    expected = "README.md needs exactly one <!-- bench:table:start --> ... <!-- bench:table:end --> block"
    assert str(caught.value) == expected
