"""Only a shipping verdict moves the champion: the registry is not touched otherwise."""

from __future__ import annotations

import pytest

from assets.decision import _register_champion
from preflight.decide import Bar, decide
from preflight.decide.outcome import DecisionSources
from tests.test_decide import DIM, cand, table


class _NoTracker:
    """A tracker that must not be called."""

    def __getattr__(self, name):
        raise AssertionError(f"the tracker was called ({name}) although nothing ships")


def test_a_verdict_that_ships_nothing_moves_no_alias():
    result = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}))], Bar())
    assert not result.ships and result.overall.candidate == "nano"
    record = _register_champion(_NoTracker(), result, DecisionSources({}), None, None,
                                {"mlflow_run_id": "r"}, {})
    assert record["candidate"] is None and record["considered"] == "nano"
    assert "champion alias does not move" in record["reason"] and record["next"]


def test_ship_and_fine_tune_are_the_shipping_verdicts():
    assert decide([cand()], Bar()).ships
    fixed = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}), ft=table())], Bar())
    assert fixed.overall.verdict == "fine-tune" and fixed.ships


class _Registry:
    """Records what is registered."""

    def __init__(self):
        self.calls = []

    def register_champion(self, run_id, *, name, checkpoint, **kw):
        self.calls.append((run_id, checkpoint, name, kw))
        return "7"


def test_an_operator_override_is_registered_as_such():
    from types import SimpleNamespace

    result = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}))], Bar()).with_override("nano")
    assert result.override == "nano" and not result.ships
    assert result.overall.reasons[0].startswith("operator override (decision.ship_anyway): nano")
    assert result.to_dict()["override"] == "nano"
    per_cand = {"nano": {"offtheshelf_eval": {"weights": "w.pt", "input_size": 320,
                                              "tables": {"metrics": "m.parquet"}}}}
    from preflight.taxonomy import Taxonomy

    cfg = SimpleNamespace(decision=SimpleNamespace(registered_model_name="det"),
                          taxonomy=["crate", "cart"], taxonomy_obj=Taxonomy(("crate", "cart")))
    zoo = SimpleNamespace(candidate=lambda name: SimpleNamespace(
        family="ultralytics", class_map={"box": "crate", "trolley": "cart"}))
    registry = _Registry()
    record = _register_champion(registry, result, DecisionSources(per_cand), cfg, zoo,
                                {"mlflow_run_id": "r"}, {"json": "decision.json"})
    assert record["candidate"] == "nano" and record["verdict"] == "operator override (measure " \
        "first)"
    (run_id, weights, name, kw), = registry.calls
    assert (run_id, weights, name, kw["alias"]) == ("r", "w.pt", "det", "champion")
    assert kw["tags"]["verdict"] == "operator override (measure first)"
    assert kw["tags"]["taxonomy"] == "crate,cart"  # what the model's class ids mean
    assert kw["record"]["class_map"] == {"box": "crate", "trolley": "cart"}  # off-the-shelf: mapped
    assert kw["decision_json"] == "decision.json"
    # a shipping verdict needs no override; an unknown candidate is an error
    shipping = decide([cand()], Bar())
    assert shipping.with_override("nano") is shipping
    with pytest.raises(KeyError, match="no candidate"):
        result.with_override("nope")


def test_a_shipped_export_is_registered_as_the_validated_file_or_not_at_all(tmp_path):
    """The champion is the export's exact file (its sha256, its metrics table, its format's
    runtime, no class map: the sidecar carries it); a file changed since validation is
    refused."""
    from preflight.decide.exports import ExportVerdict
    from preflight.decide.outcome import ArtefactChanged, DecisionSources, choose_champion
    from preflight.models.base import sha256_file

    result = decide([cand()], Bar())
    name = result.overall.candidate
    onnx = tmp_path / "m.int8.onnx"
    onnx.write_bytes(b"validated")
    verdict = ExportVerdict(
        candidate=name, label="onnx_int8", description=f"INT8 ONNX export of {name}",
        source_stage=result.overall.stage, clears_bar=True, latency_ok=True, n_pass=3, n_fail=0,
        n_not_enough=0, latency_p99_ms=50.0, source_latency_p99_ms=400.0, speedup=8.0,
        weights=str(onnx), sha256=sha256_file(onnx))
    per_cand = {name: {"offtheshelf_eval": {"weights": "w.pt", "input_size": 320,
                                            "tables": {"metrics": "m.parquet"}}}}
    exports = [{"candidate": name, "label": "onnx_int8", "source_stage": result.overall.stage,
                "tables": {"metrics": "export-metrics.parquet"}}]
    sources = DecisionSources(per_cand, exports, shipped_export=verdict)
    chosen = choose_champion(result, sources)
    record = chosen.record(registered_model="det", run_id="r", family="ultralytics",
                           class_map={"box": "crate"}, taxonomy=["crate"])
    assert (record["weights"], record["sha256"], record["metrics"]) == (
        str(onnx), verdict.sha256, "export-metrics.parquet")
    assert (record["artefact"], record["export"], record["family"], record["class_map"]) == (
        verdict.description, "onnx_int8", "onnxruntime", None)
    onnx.write_bytes(b"changed")
    with pytest.raises(ArtefactChanged, match="changed since it was validated"):
        choose_champion(result, sources)
