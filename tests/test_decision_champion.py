"""Only a shipping verdict moves the champion: the registry is not touched otherwise, and the
champion record of the model in production is kept."""

from __future__ import annotations

import json

from assets.decision import _record_champion, _register_champion
from preflight.decide import Bar, decide
from tests.test_decide import DIM, cand, table


class _NoTracker:
    """A tracker that must not be called."""

    def __getattr__(self, name):
        raise AssertionError(f"the tracker was called ({name}) although nothing ships")


def test_a_verdict_that_ships_nothing_moves_no_alias(tmp_path):
    result = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}))], Bar())
    assert not result.ships and result.overall.candidate == "nano"
    record = _register_champion(None, _NoTracker(), result, {}, None, {})
    assert record["candidate"] is None and record["considered"] == "nano"
    assert "champion alias does not move" in record["reason"] and record["next"]
    path = tmp_path / "champion.json"
    _record_champion(path, record)                       # none yet: says why none was chosen
    assert json.loads(path.read_text())["candidate"] is None
    path.write_text(json.dumps({"candidate": "small", "version": "3"}))
    _record_champion(path, record)                       # a champion in production: kept
    assert json.loads(path.read_text()) == {"candidate": "small", "version": "3"}
    _record_champion(path, {"candidate": "nano", "version": "4"})
    assert json.loads(path.read_text())["candidate"] == "nano"


def test_ship_and_fine_tune_are_the_shipping_verdicts():
    assert decide([cand()], Bar()).ships
    fixed = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}), ft=table())], Bar())
    assert fixed.overall.verdict == "fine-tune" and fixed.ships
