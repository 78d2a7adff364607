"""Only a shipping verdict moves the champion: the registry is not touched otherwise."""

from __future__ import annotations

from assets.decision import _register_champion
from preflight.decide import Bar, decide
from tests.test_decide import DIM, cand, table


class _NoTracker:
    """A tracker that must not be called."""

    def __getattr__(self, name):
        raise AssertionError(f"the tracker was called ({name}) although nothing ships")


def test_a_verdict_that_ships_nothing_moves_no_alias():
    result = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}))], Bar())
    assert not result.ships and result.overall.candidate == "nano"
    record = _register_champion(None, _NoTracker(), result, {}, None, {"mlflow_run_id": "r"})
    assert record["candidate"] is None and record["considered"] == "nano"
    assert "champion alias does not move" in record["reason"] and record["next"]


def test_ship_and_fine_tune_are_the_shipping_verdicts():
    assert decide([cand()], Bar()).ships
    fixed = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}), ft=table())], Bar())
    assert fixed.overall.verdict == "fine-tune" and fixed.ships
