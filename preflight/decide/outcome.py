"""What the decision hands on: the table of every candidate and exported artefact (the exact
files, by sha256), the champion to register -- only when the verdict ships a model -- and the
failing rows with their route.

The inputs are the stages' plain records per candidate (:class:`DecisionSources`: the
off-the-shelf evaluation, the fine-tuned model and its re-evaluation, each export), so the
record of what ships names the file that was validated and the table it was validated with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from preflight.decide.exports import ExportVerdict
from preflight.decide.rule import FINE_TUNE, SHIP, Decision
from preflight.stages import FINE_TUNED

#: verdicts that put a model into production (the only ones that move ``champion``)
SHIPPING_VERDICTS = (SHIP, FINE_TUNE)
#: report section: every candidate's FP32 model and every exported artefact, with the sha256
CANDIDATES_TITLE = "Candidates and exported artefacts (the exact files)"
#: the failing rows' columns as the decision routes them
ROUTED_COLUMNS = ["candidate", "stage", "slice_column", "slice_value", "metric", "value",
                  "failure_kind", "route", "remedy"]


class ArtefactChanged(RuntimeError):
    """The file chosen to ship is not the file that was validated (its sha256 differs)."""


def sha256_of(path: str) -> str:
    """The file's sha256 ("" when there is no such file)."""
    from preflight.models.base import sha256_file

    return sha256_file(path) if Path(path).is_file() else ""


def _key(x: Any) -> tuple[str, str, str]:
    """An export's identity: (candidate, format label, source stage)."""
    if isinstance(x, Mapping):
        return x["candidate"], x["label"], x["source_stage"]
    return x.candidate, x.label, x.source_stage


@dataclass(frozen=True)
class DecisionSources:
    """The stages' records the decision points at: per candidate, its assets' outputs by asset
    name (``offtheshelf_eval``, ``finetuned_model``, ``reeval``, ...); each export's record; and
    the export the rule chose to ship, if any."""

    per_candidate: Mapping[str, Mapping[str, Any]]
    exports: Sequence[Mapping[str, Any]] = ()
    shipped_export: ExportVerdict | None = None

    def fine_tuned(self, candidate: str, stage: str | None) -> bool:
        """Whether ``stage`` of ``candidate`` is a fine-tuned model it has."""
        return stage == FINE_TUNED and bool(self.per_candidate[candidate].get("finetuned_model"))

    def model(self, candidate: str, stage: str | None) -> tuple[str, str]:
        """(weights, metrics table) of the FP32 model the verdict about ``stage`` is about."""
        inputs = self.per_candidate[candidate]
        if self.fine_tuned(candidate, stage):
            return inputs["finetuned_model"]["weights"], inputs["reeval"]["tables"]["metrics"]
        off = inputs["offtheshelf_eval"]
        return off["weights"], off["tables"]["metrics"]

    def export_record(self, export: Any) -> Mapping[str, Any]:
        """The record of one export (an :class:`ExportVerdict` or anything with its key)."""
        return next(v for v in self.exports if _key(v) == _key(export))

    def ships(self, export: ExportVerdict) -> bool:
        return self.shipped_export is not None and _key(export) == _key(self.shipped_export)


def candidates_table(result: Decision, sources: DecisionSources,
                     export_verdicts: Sequence[ExportVerdict]) -> pd.DataFrame:
    """The report's candidate table: one row per candidate (its verdict and the FP32 model the
    verdict is about) and one per exported artefact (held against the same bar), each with the
    sha256 of the exact file -- the exports are candidates too."""
    rows = []
    for v in result.candidates:
        inputs = sources.per_candidate[v.name]
        rows.append({
            "candidate": v.name, "artefact": "FP32 model", "verdict": v.verdict,
            "stage": v.stage, "p99 ms": v.latency_p99_ms, "daily cost": v.daily_cost,
            "pass": v.n_pass, "fail": v.n_fail, "not enough evidence": v.n_not_enough,
            "AP50 off-the-shelf": inputs["offtheshelf_eval"]["AP50"],
            "AP50 fine-tuned": (inputs["reeval"] or {}).get("AP50"),
            "sha256": sha256_of(sources.model(v.name, v.stage)[0])})
    for e in export_verdicts:
        value = sources.export_record(e)
        fine = e.source_stage == FINE_TUNED
        rows.append({
            "candidate": e.candidate, "artefact": e.description,
            "verdict": ("ships" if sources.ships(e) else "clears the bar" if e.clears_bar
                        else "does not clear the bar"),
            "stage": e.source_stage, "p99 ms": e.latency_p99_ms,
            "daily cost": value.get("daily_cost"), "pass": e.n_pass, "fail": e.n_fail,
            "not enough evidence": e.n_not_enough,
            "AP50 off-the-shelf": None if fine else value.get("AP50"),
            "AP50 fine-tuned": value.get("AP50") if fine else None,
            "sha256": e.sha256})
    return pd.DataFrame(rows)


def routed_failures(slices: pd.DataFrame) -> pd.DataFrame:
    """The failing rows, each with its failure kind and route (data collection or model
    change) and the remedy."""
    return slices[slices["status"] == "fail"][ROUTED_COLUMNS]


@dataclass(frozen=True)
class Champion:
    """The model a shipping verdict (or an operator override) puts into production: the exact
    file and the table it was validated with."""

    candidate: str
    stage: str | None
    verdict: str
    weights: str
    sha256: str
    metrics: str
    input_size: int
    fine_tuned: bool
    export: ExportVerdict | None = None
    reasons: tuple[str, ...] = field(default=())

    @property
    def artefact(self) -> str:
        return self.export.description if self.export else "FP32 model"

    @property
    def runtime_family(self) -> str | None:
        """The model family that runs an exported file (its format's runtime); None for an
        FP32 model (the candidate's own family)."""
        if self.export is None:
            return None
        from preflight.models.export import parse_spec

        return parse_spec(self.export.label).runtime

    def record(self, *, registered_model: str, run_id: str, family: str,
               class_map: Mapping[str, str] | None, taxonomy: Sequence[str]) -> dict[str, Any]:
        """What the registry keeps with the model (and ``champion.json`` beside the report).
        ``family``/``class_map``: the candidate's (an export runs on its format's runtime and
        carries its map in its sidecar; a fine-tuned checkpoint speaks the operational
        taxonomy: no map)."""
        return {
            "candidate": self.candidate, "stage": self.stage, "verdict": self.verdict,
            "weights": self.weights, "sha256": self.sha256, "artefact": self.artefact,
            "export": self.export.label if self.export else None,
            "metrics": self.metrics, "registered_model": registered_model,
            "mlflow_run_id": run_id, "input_size": self.input_size,
            "family": self.runtime_family or family,
            "class_map": None if (self.fine_tuned or self.export) else class_map,
            "taxonomy": list(taxonomy)}

    def description(self) -> str:
        """The registered version's description (the verdict and its reasons)."""
        return (f"{self.verdict}: {self.candidate} ({self.stage}, {self.artefact}). "
                + " ".join(self.reasons)[:4000])


def no_champion(result: Decision) -> dict[str, Any]:
    """The record of a decision that ships nothing: no alias moves, and what to do next."""
    o = result.overall
    return {"candidate": None, "verdict": o.verdict, "considered": o.candidate,
            "reason": f"{o.verdict}: nothing ships, the champion alias does not move",
            "next": list(o.reasons)}


def choose_champion(result: Decision, sources: DecisionSources) -> Champion | None:
    """The model to register as champion: the verdict's when it ships one, the operator's
    override otherwise; None when nothing ships. The shipped export replaces its candidate's
    FP32 model, as the exact file that was validated (:class:`ArtefactChanged` if it changed
    since)."""
    o = result.overall
    chosen, stage, verdict = o.candidate, o.stage, o.verdict
    if getattr(result, "override", None):
        chosen = result.override
        stage = result.candidate(chosen).stage
        verdict = f"operator override ({o.verdict})"
    elif not result.ships or o.verdict not in SHIPPING_VERDICTS:
        return None
    weights, metrics = sources.model(chosen, stage)
    sha256 = sha256_of(weights)
    export = sources.shipped_export
    if export is not None and chosen == export.candidate:
        weights, sha256 = export.weights, export.sha256
        metrics = sources.export_record(export)["tables"]["metrics"]
        if sha256_of(weights) != sha256:
            raise ArtefactChanged(f"{weights} changed since it was validated (sha256 "
                                  f"{sha256[:12]} recorded); refusing to register it")
    else:
        export = None
    return Champion(
        candidate=chosen, stage=stage, verdict=verdict, weights=weights, sha256=sha256,
        metrics=metrics, fine_tuned=sources.fine_tuned(chosen, stage), export=export,
        input_size=sources.per_candidate[chosen]["offtheshelf_eval"]["input_size"],
        reasons=tuple(o.reasons))
