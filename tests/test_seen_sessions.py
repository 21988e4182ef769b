"""SeenSessions against a plain dict, across the folds into its sorted arrays."""

from __future__ import annotations

import random

import numpy as np
from cekura_sessions.extract import seen as seen_sessions
from cekura_sessions.extract.seen import SeenSessions


def test_every_repeat_is_found_with_the_project_that_listed_it_first(monkeypatch):
    monkeypatch.setattr(seen_sessions, "FOLD_AT", 50)  # fold often
    rng = random.Random(3)
    seen, first_project = SeenSessions(), {}
    for project_id in range(1, 120):
        ids = rng.sample(range(-500, 5_000), rng.randint(0, 30))
        want = {i: first_project[i] for i in ids if i in first_project}

        got = seen.first_listed_under(np.array(ids, dtype=np.int64))

        assert got == want, project_id
        new = [i for i in ids if i not in first_project]
        seen.add(np.array(new, dtype=np.int64), project_id)
        first_project.update(dict.fromkeys(new, project_id))
    assert len(first_project) > 1_000  # folded about 30 times


def test_extremes_of_bigint_are_ids_like_any_other():
    seen = SeenSessions()
    extremes = np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64)
    seen.add(extremes, 7)
    seen._fold()
    assert seen.first_listed_under(np.array([2**63 - 1, 1, -(2**63)], dtype=np.int64)) == {2**63 - 1: 7, -(2**63): 7}
