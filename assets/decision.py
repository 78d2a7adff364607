"""Stage 6: the decision — ship off-the-shelf, fine-tune, replace, or collect more data first.

Reads every candidate's off-the-shelf and fine-tuned results, learning curves and tiling results,
applies the rule (:mod:`preflight.decide`), writes the report (Markdown, HTML, JSON) and, only when
the verdict ships a model (off-the-shelf or fine-tuned), registers it in MLflow's registry with the
alias ``champion``; any other verdict moves no alias and the report says what to do next. What the
decision hands on (the candidates table, the champion) is :mod:`preflight.decide.outcome`; the
exports as evidence, :mod:`preflight.decide.export_evidence`.
"""

import json
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run
from preflight.decide import CandidateEvidence, Decision
from preflight.decide.export_evidence import EXPORTS_TITLE, assess_export_values
from preflight.decide.exports import ExportVerdict
from preflight.decide.outcome import (
    CANDIDATES_TITLE,
    ArtefactChanged,
    DecisionSources,
    candidates_table,
    choose_champion,
    no_champion,
    routed_failures,
)
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource

#: per-candidate inputs of the decision (asset name -> required)
INPUTS = ("offtheshelf_eval", "offtheshelf_latency", "offtheshelf_stress", "reeval",
          "reeval_latency", "tiling_eval", "finetuned_model", "learning_curve",
          "finetuned_second_seed")


def _read(path: str | None) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path else None


def _curve_points(curve: dict | None) -> pd.DataFrame | None:
    """A learning-curve asset's points (``n_images_train`` per row), or None."""
    return _read(curve["tables"]["points"]) if curve else None


def gather_evidence(candidate: str, inputs: dict, settings, pool_images: int, rank: int,
                    family: str = "", bar=None, ground_truth: tuple | None = None):
    """The decision rule's evidence for one candidate from its assets' outputs
    (``ground_truth``: the evaluation split's images and boxes, for the objects' sizes at the
    candidate's input)."""
    from preflight.decide.evidence import (
        EvidenceTables,
        StageResults,
        build_evidence,
        object_sizes_at_input,
    )

    cfg = settings.load()
    off = inputs["offtheshelf_eval"]
    ft = inputs.get("reeval")
    stress = inputs.get("offtheshelf_stress")
    second = inputs.get("finetuned_second_seed") or {}
    tables = EvidenceTables(
        candidate,
        offtheshelf=StageResults(_read(off["tables"]["metrics"]),
                                 inputs["offtheshelf_latency"]["production_p99_ms"],
                                 cost=_read(off["tables"]["cost"]),
                                 confusion=_read(off["tables"].get("confusion"))),
        finetuned=StageResults(_read(ft["tables"]["metrics"]),
                               inputs["reeval_latency"]["production_p99_ms"]
                               if inputs.get("reeval_latency") else None,
                               cost=_read(ft["tables"]["cost"]),
                               confusion=_read(ft["tables"].get("confusion")))
                  if ft else StageResults(),
        finetuned_second_seed=_read(second.get("tables", {}).get("metrics")),
        second_seed=second.get("seed"), no_analog=off.get("no_analog", []),
        input_size=off["input_size"], image_size=off.get("image_size"), family=family,
        size_rank=rank, points=_curve_points(inputs.get("learning_curve")),
        tiling=inputs.get("tiling_eval"), pool_images=pool_images,
        stress=_read(stress["tables"]["stress"]) if stress else None,
        object_sizes=(object_sizes_at_input(*ground_truth, int(off["input_size"]))
                      if ground_truth is not None else None))
    return build_evidence(tables, bar, saturation_tol=cfg.decision.saturation_tolerance,
                          seed=cfg.evaluation.seed)


def decision_inputs(candidates: list[str], finetuned: set[str], curves: set[str],
                    tiling: bool = True, exports: dict[str, list[str]] | None = None,
                    second_seed: set[str] | None = None) -> tuple[dict[str, dg.AssetIn], list]:
    """The decision's inputs (``<candidate>__<asset>`` -> its asset) and, of them, the names of
    the export inputs (see :func:`build_decision_asset`)."""
    ins: dict[str, dg.AssetIn] = {"validated_labels": dg.AssetIn(key="validated_labels")}
    for name in candidates:
        key = candidate_key(name)
        wanted = ["offtheshelf_eval", "offtheshelf_latency", "offtheshelf_stress"] + (
            ["tiling_eval"] if tiling else [])
        if name in finetuned:
            wanted += ["finetuned_model", "reeval", "reeval_latency"]
        if name in curves:
            wanted.append("learning_curve")
        if name in (second_seed or set()):
            wanted.append("finetuned_second_seed")
        ins.update({f"{key}__{asset}": dg.AssetIn(key=[key, asset]) for asset in wanted})
    export_ins = [f"{candidate_key(n)}__{asset}"
                  for n, assets in (exports or {}).items() for asset in assets]
    ins.update({k: dg.AssetIn(key=k.split("__", 1)) for k in export_ins})
    return ins, export_ins


def build_decision_asset(candidates: list[str], finetuned: set[str], curves: set[str],
                         tiling: bool = True, exports: dict[str, list[str]] | None = None,
                         second_seed: set[str] | None = None) -> dg.AssetsDefinition:
    """The decision asset over every candidate's per-candidate assets (``exports``: candidate ->
    the names of its export assets, ``export_<stage>_<format>``, which the decision weighs as
    candidates too; ``second_seed``: candidates with a second-seed fine-tune,
    ``decision.second_seed``)."""
    ins, export_ins = decision_inputs(candidates, finetuned, curves, tiling, exports,
                                      second_seed)
    charted = [n for n in candidates if n in finetuned]

    @dg.asset(name="decision", group_name="decision", ins=ins, kinds={"mlflow", "html"})
    def decision(context: dg.AssetExecutionContext, settings: SettingsResource,
                 store: PreflightStore, tracker: MlflowTracker, zoo: ModelZoo,
                 **inputs) -> dg.Output[dict]:
        """The call with its evidence: per candidate and overall, each failing slice routed to
        data collection (data-solvable) or model change (architecture-bound)."""
        labels = inputs.pop("validated_labels")
        per_cand = {name: {asset: inputs.get(f"{candidate_key(name)}__{asset}")
                           for asset in INPUTS} for name in candidates}
        images = pd.read_parquet(labels["images"])
        decided = _decide(settings, zoo, labels, images, per_cand,
                          [inputs[k] for k in export_ins])
        summary, paths = _write_report(store, decided, charted)
        run = _record_decision_run(context, tracker, decided.result, paths)
        champion = _register_champion(tracker, decided.result, decided.sources, settings.load(),
                                      zoo, run, paths)
        if champion.get("candidate"):
            # the drift reference: the evaluation split the champion was validated on, pinned
            # in this run's folder (no later pass can replace it)
            reference = images[images["split"] == "eval"].reset_index(drop=True)
            champion["reference_images"] = str(store.write_table("decision/reference_images",
                                                                 reference))
        # the run's human-readable record beside its decision report (per run, never read back:
        # monitoring takes the champion from this asset's output and the registry alias)
        store.write_text("reports", "champion.json", text=json.dumps(jsonable(champion), indent=1))
        # what monitoring watches: this champion, or -- when nothing ships -- the one already in
        # production, with the reference pinned when it shipped
        watched = champion if champion.get("candidate") else (
            in_production(context.instance, context.asset_key) or champion)
        o = decided.result.overall
        context.log.info(f"decision: {o.verdict} — {o.candidate} ({o.stage})")
        return _output(decided, summary, paths, champion, watched)

    return decision


@dataclass(frozen=True)
class Decided:
    """The call and what it was made on: the rule's result (exports weighed, override applied),
    the candidates' evidence, the records it points at, and the exports' verdicts and tables."""

    result: Decision
    evidence: list[CandidateEvidence]
    sources: DecisionSources
    export_verdicts: list[ExportVerdict]
    export_tables: dict[str, pd.DataFrame]


def _decide(settings: SettingsResource, zoo: ModelZoo, labels: dict, images: pd.DataFrame,
            per_cand: dict, export_values: list[dict]) -> Decided:
    """Gather every candidate's evidence, apply the rule, weigh the exports, apply the
    operator's override."""
    from preflight.decide import Bar, decide
    from preflight.decide.evidence import size_ranks
    from preflight.decide.exports import choose_export

    cfg = settings.load()
    candidates = list(per_cand)
    pool = int((images["split"] == "finetune").sum())
    ranks = size_ranks({n: int(v["offtheshelf_eval"].get("n_parameters") or 0)
                        for n, v in per_cand.items()})
    bar = Bar.from_settings(cfg.bar, cfg.decision, stress=cfg.stress)
    eval_images = images[images["split"] == "eval"]
    eval_boxes = pd.read_parquet(labels["boxes"])
    eval_boxes = eval_boxes[eval_boxes["image_id"].isin(eval_images["image_id"])]
    evidence = [gather_evidence(n, per_cand[n], settings, pool, ranks[n],
                                zoo.candidate(n).family, bar, (eval_images, eval_boxes))
                for n in candidates]
    result = decide(evidence, bar)
    # exports are candidates too: one ships when it clears the bar and its FP32 source is
    # over the latency budget (before an operator override, which only acts on no-ship)
    export_verdicts, export_tables = _export_evidence(export_values, bar, per_cand)
    result, shipped_export = choose_export(result, export_verdicts, bar)
    override = cfg.decision.ship_anyway
    if override and override not in candidates:
        raise dg.Failure(f"decision.ship_anyway names {override!r}, which is not a "
                         f"candidate ({', '.join(candidates)})")
    return Decided(result.with_override(override), evidence,
                   DecisionSources(per_cand, export_values, shipped_export), export_verdicts,
                   export_tables)


def _write_report(store: PreflightStore, decided: Decided, charted: list[str]
                  ) -> tuple[pd.DataFrame, dict]:
    """The decision report (Markdown, HTML, JSON) with its charts and the candidates table
    (``charted``: the fine-tuned candidates, each with a before/after chart); returns the
    candidates table and the report's paths."""
    from preflight.report.decision import write_decision_report
    from preflight.report.decision_charts import before_after_charts, learning_curve_charts

    result, per_cand = decided.result, decided.sources.per_candidate
    out_dir = store.run_path("reports", "decision.md").parent
    plots = before_after_charts(result, charted, out_dir / "plots", candidate_key)
    points = {n: _curve_points(v.get("learning_curve")) for n, v in per_cand.items()}
    plots.update(learning_curve_charts(result, decided.evidence, points, out_dir / "plots",
                                       candidate_key))
    summary = candidates_table(result, decided.sources, decided.export_verdicts)
    paths = write_decision_report(result, out_dir, plots=plots, evidence={
        CANDIDATES_TITLE: _shown(summary), **decided.export_tables})
    return summary, paths


def _shown(summary: pd.DataFrame) -> pd.DataFrame:
    """The candidates table as shown (the sha256 shortened)."""
    return summary.assign(sha256=summary["sha256"].str[:12]).rename(
        columns={"sha256": "sha256 (first 12)"})


def _output(decided: Decided, summary: pd.DataFrame, paths: dict, champion: dict,
            watched: dict) -> dg.Output[dict]:
    """The decision's output (what monitoring and the demo read) and its metadata."""
    result, shipped = decided.result, decided.sources.shipped_export
    o = result.overall
    tables = decided.export_tables
    return dg.Output(jsonable({
        "verdict": o.verdict, "candidate": o.candidate, "stage": o.stage,
        "reasons": list(o.reasons), "artefact": shipped.description if shipped else None,
        "candidates": summary.to_dict(orient="records"),
        "report": {k: str(v) for k, v in paths.items()},
        "champion": watched, "decided": champion}), metadata={
        "verdict": dg.MetadataValue.text(f"{o.verdict}: {o.candidate} ({o.stage})"),
        "in_production": dg.MetadataValue.json(jsonable(
            watched if watched.get("candidate") else {})),
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in o.reasons)),
        "candidates": dg.MetadataValue.md(md_table(_shown(summary))),
        "failing_slices_routed": dg.MetadataValue.md(md_table(routed_failures(result.slices),
                                                              max_rows=30)),
        "fixed_by_finetune": len(result.fixed), "not_fixed": len(result.not_fixed),
        "not_enough_evidence": len(result.not_enough_evidence),
        # fine-tuned rows a re-run could flip (failing ones are routed uncertain)
        "close_to_the_bar": int(result.slices["close"].astype(bool).sum()),
        **({"exports": dg.MetadataValue.md(md_table(tables[EXPORTS_TITLE]))} if tables else {}),
        "report_html": dg.MetadataValue.path(str(paths["html"])),
        "report_markdown": dg.MetadataValue.path(str(paths["markdown"])),
        **({"champion_model": dg.MetadataValue.text(
            f"{champion['registered_model']} v{champion['version']} @champion")}
           if champion.get("version") else {})})


def in_production(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The champion in production as the last ``decision`` materialisation left it (its pinned
    reference included); empty when none has shipped yet."""
    records = instance.fetch_materializations(key, limit=1).records
    entry = records[0].asset_materialization.metadata.get("in_production") if records else None
    return dict(entry.value) if entry is not None else {}


def _record_decision_run(context, tracker: MlflowTracker, result, paths: dict) -> dict:
    """The decision's MLflow run (verdict, candidate, report files), whatever the verdict."""
    o = result.overall
    return record_run(context, tracker, name="decision", stage="decision",
                      candidate=o.candidate or "",
                      params={"verdict": o.verdict, "candidate": o.candidate or "",
                              "stage": o.stage or "", "ships": result.ships,
                              "override": getattr(result, "override", None) or ""},
                      metrics={}, artifacts=[("decision", str(p)) for p in paths.values()])


def _export_evidence(values: list[dict], bar, per_cand: dict
                     ) -> tuple[list, dict[str, pd.DataFrame]]:
    """The exports' verdicts against the bar and their report tables
    (:func:`~preflight.decide.export_evidence.assess_export_values`), an off-the-shelf export
    blocked by its source's operational classes without an analog in pre-training."""
    no_analog = {n: v["offtheshelf_eval"].get("no_analog") or [] for n, v in per_cand.items()}
    return assess_export_values(values, bar, no_analog)


def _register_champion(tracker: MlflowTracker, result, sources: DecisionSources, cfg,
                       zoo: ModelZoo, run: dict, paths: dict) -> dict:
    """Register the chosen model (alias ``champion``) on the decision's run -- only when the
    verdict ships it; otherwise no alias moves (monitoring keeps watching the model in
    production) and the record says what to do next. An export that ships is registered as the
    exact file that was validated (its sha256 in the tags and the record)."""
    try:
        chosen = choose_champion(result, sources)
    except ArtefactChanged as exc:
        raise dg.Failure(str(exc)) from exc
    if chosen is None:
        return no_champion(result)
    candidate = zoo.candidate(chosen.candidate)
    name = cfg.decision.registered_model_name
    record = jsonable(chosen.record(
        registered_model=name, run_id=run["mlflow_run_id"], family=candidate.family,
        class_map=candidate.class_map, taxonomy=cfg.taxonomy))
    version = tracker.register_champion(  # an MLflow pyfunc model: load it by its alias
        run["mlflow_run_id"], name=name, checkpoint=chosen.weights, record=record,
        decision_json=paths["json"], alias="champion", description=chosen.description(),
        tags={"candidate": chosen.candidate, "stage": str(chosen.stage),
              "verdict": chosen.verdict, "sha256": chosen.sha256, "artefact": chosen.artefact,
              # the class list the model's outputs mean (the settings' taxonomy, in id order)
              "taxonomy": ",".join(cfg.taxonomy_obj.names)})
    return {**record, "version": version}
