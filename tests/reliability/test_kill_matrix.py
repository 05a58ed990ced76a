"""kill -9 at every stage (the fast subset: one seeded random moment per stage; the full matrix is
`benchmarks/reliability.py`): after each kill and restart, every invariant of `invariants.check_invariants` holds."""

import pytest

from stages import STAGES, kill_at_random_moment

FAST_STAGES = ["bulk_json", "archive", "adds", "reembed", "galleries", "index_save"]


@pytest.mark.parametrize("stage", FAST_STAGES)
def test_sigkill_at_a_random_moment_breaks_no_invariant(live, stage):
    result = kill_at_random_moment(live, STAGES[stage])
    assert result.violations == [], (f"{stage} killed at {result.moment_s} s ({result.phase}):\n"
                                     + "\n".join(result.violations) + "\n" + live.server.log_tail(3000))
