"""A Jepsen-style checker for queue runs: classify every task id, then judge the run.

lost:        enqueued, but neither done nor dead-lettered
unexpected:  done or dead-lettered, but never enqueued
duplicated:  done more than once (allowed only up to what was in flight at crashes)
both:        done and dead-lettered (never allowed)
dead twice:  more than one DLQ entry (never allowed)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Verdict:
    enqueued: int
    done: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    unexpected: set[str] = field(default_factory=set)
    duplicated: dict[str, int] = field(default_factory=dict)
    both: set[str] = field(default_factory=set)
    dead_twice: set[str] = field(default_factory=set)

    @property
    def extra_runs(self) -> int:
        """Completions beyond the first, summed over all ids."""
        return sum(count - 1 for count in self.duplicated.values())

    def summary(self) -> str:
        return (f"enqueued {self.enqueued}, done {len(self.done)}, dead-lettered {len(self.dead)}, "
                f"lost {len(self.lost)}, unexpected {len(self.unexpected)}, duplicated {len(self.duplicated)} "
                f"({self.extra_runs} extra runs), done and dead {len(self.both)}, dead twice {len(self.dead_twice)}")


def check(enqueued: set[str], completions: list[str], dead_lettered: list[str]) -> Verdict:
    """``completions``: one task id per successful handler run; ``dead_lettered``: one id per DLQ entry."""
    done_counts = Counter(completions)
    dead_counts = Counter(dead_lettered)
    done, dead = set(done_counts), set(dead_counts)
    return Verdict(
        enqueued=len(enqueued),
        done=done,
        dead=dead,
        lost=enqueued - done - dead,
        unexpected=(done | dead) - enqueued,
        duplicated={task_id: n for task_id, n in done_counts.items() if n > 1},
        both=done & dead,
        dead_twice={task_id for task_id, n in dead_counts.items() if n > 1},
    )


def assert_valid(verdict: Verdict, max_extra_runs: int) -> None:
    """A run is valid when nothing is lost or unexpected, each id ends once, and duplicates stay bounded."""
    problems = []
    if verdict.lost:
        problems.append(f"lost: {sorted(verdict.lost)[:10]}")
    if verdict.unexpected:
        problems.append(f"unexpected: {sorted(verdict.unexpected)[:10]}")
    if verdict.both:
        problems.append(f"done and dead-lettered: {sorted(verdict.both)[:10]}")
    if verdict.dead_twice:
        problems.append(f"dead-lettered twice: {sorted(verdict.dead_twice)[:10]}")
    if verdict.extra_runs > max_extra_runs:
        problems.append(f"{verdict.extra_runs} duplicate runs, more than the {max_extra_runs} in flight at crashes")
    assert not problems, verdict.summary() + "\n" + "\n".join(problems)
