"""The checker itself, on hand-made histories (a pure function, so no Redis here)."""

from oracle import assert_valid, check
import pytest


def test_a_clean_run_is_valid() -> None:
    verdict = check({"a", "b", "c"}, ["a", "b"], ["c"])
    assert_valid(verdict, max_extra_runs=0)
    assert verdict.done == {"a", "b"} and verdict.dead == {"c"}


@pytest.mark.parametrize("completions, dead, problem", [
    (["a"], [], "lost: ['b']"),
    (["a", "b", "x"], [], "unexpected: ['x']"),
    (["a", "b"], ["b"], "done and dead-lettered: ['b']"),
    (["a"], ["b", "b"], "dead-lettered twice: ['b']"),
    (["a", "a", "b"], [], "1 duplicate runs, more than the 0 in flight"),
])
def test_each_kind_of_fault_is_caught(completions: list[str], dead: list[str], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        assert_valid(check({"a", "b"}, completions, dead), max_extra_runs=0)


def test_duplicates_within_the_in_flight_bound_are_allowed() -> None:
    verdict = check({"a", "b"}, ["a", "a", "b", "b"], [])
    assert verdict.extra_runs == 2
    assert_valid(verdict, max_extra_runs=2)
