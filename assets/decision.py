"""Stage 6: the decision — ship off-the-shelf, fine-tune, replace, or collect more data first.

Reads every candidate's off-the-shelf and fine-tuned results, learning curves and tiling results,
applies the rule (:mod:`preflight.decide`), writes the report (Markdown, HTML, JSON) and, only when
the verdict ships a model (off-the-shelf or fine-tuned), registers it in MLflow's registry with the
alias ``champion``; any other verdict moves no alias and the report says what to do next.
"""

import json
import re

import dagster as dg
import pandas as pd

from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run
from preflight.decide.rule import FINE_TUNE, SHIP
from preflight.metrics.slices import OVERALL
from preflight.stages import FINE_TUNED
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource

#: per-candidate inputs of the decision (asset name -> required)
INPUTS = ("offtheshelf_eval", "offtheshelf_latency", "offtheshelf_stress", "reeval",
          "reeval_latency", "tiling_eval", "finetuned_model", "learning_curve",
          "finetuned_second_seed")
#: learning-curve charts per candidate in the report (the table lists every curve)
MAX_CURVE_CHARTS = 6
#: verdicts that put a model into production (the only ones that move ``champion``)
SHIPPING_VERDICTS = (SHIP, FINE_TUNE)
#: report section: every candidate's FP32 model and every exported artefact, with the sha256
CANDIDATES_TITLE = "Candidates and exported artefacts (the exact files)"
#: report sections of the exported artefacts
EXPORTS_TITLE = "Exports (latency against the FP32 source, the bar)"
DELTAS_TITLE = "Export per-slice recall against the FP32 source (paired over frames)"
#: the exports table's column of the recall rows that changed beyond the paired interval
CHANGED_COLUMN = "recall changed beyond the interval"


def _read(path: str | None) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path else None


def gather_evidence(candidate: str, inputs: dict, settings, pool_images: int, rank: int,
                    family: str = "", bar=None, ground_truth: tuple | None = None):
    """The decision rule's evidence for one candidate from its assets' outputs
    (``ground_truth``: the evaluation split's images and boxes, for the objects' sizes at the
    candidate's input)."""
    from preflight.decide.evidence import build_evidence, object_sizes_at_input

    cfg = settings.load()
    off = inputs["offtheshelf_eval"]
    ft = inputs.get("reeval")
    stress = inputs.get("offtheshelf_stress")
    curve = inputs.get("learning_curve")
    second = inputs.get("finetuned_second_seed") or {}
    points = _read(curve["tables"]["points"]) if curve else None
    return build_evidence(
        candidate, offtheshelf=_read(off["tables"]["metrics"]),
        latency_p99_ms=inputs["offtheshelf_latency"]["production_p99_ms"],
        finetuned=_read(ft["tables"]["metrics"]) if ft else None,
        latency_p99_ms_finetuned=(inputs["reeval_latency"]["production_p99_ms"]
                                  if inputs.get("reeval_latency") else None),
        cost_offtheshelf=_read(off["tables"]["cost"]),
        cost_finetuned=_read(ft["tables"]["cost"]) if ft else None,
        no_analog=off.get("no_analog", []), input_size=off["input_size"],
        image_size=off.get("image_size"), family=family, size_rank=rank,
        points=points, tiling=inputs.get("tiling_eval"), pool_images=pool_images,
        saturation_tol=cfg.decision.saturation_tolerance, seed=cfg.evaluation.seed,
        confusion_offtheshelf=_read(off["tables"].get("confusion")),
        confusion_finetuned=_read(ft["tables"].get("confusion")) if ft else None,
        stress=_read(stress["tables"]["stress"]) if stress else None, bar=bar,
        object_sizes=(object_sizes_at_input(*ground_truth, int(off["input_size"]))
                      if ground_truth is not None else None),
        finetuned_second_seed=_read(second.get("tables", {}).get("metrics")),
        second_seed=second.get("seed"))


def build_decision_asset(candidates: list[str], finetuned: set[str], curves: set[str],
                         tiling: bool = True, exports: dict[str, list[str]] | None = None,
                         second_seed: set[str] | None = None) -> dg.AssetsDefinition:
    """The decision asset over every candidate's per-candidate assets (``exports``: candidate ->
    the names of its export assets, ``export_<stage>_<format>``, which the decision weighs as
    candidates too; ``second_seed``: candidates with a second-seed fine-tune,
    ``decision.second_seed``)."""
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

    @dg.asset(name="decision", group_name="decision", ins=ins, kinds={"mlflow", "html"})
    def decision(context: dg.AssetExecutionContext, settings: SettingsResource,
                 store: PreflightStore, tracker: MlflowTracker, zoo: ModelZoo,
                 **inputs) -> dg.Output[dict]:
        """The call with its evidence: per candidate and overall, each failing slice routed to
        data collection (data-solvable) or model change (architecture-bound)."""
        from preflight.decide import Bar, decide
        from preflight.decide.evidence import size_ranks
        from preflight.decide.exports import choose_export
        from preflight.report.decision import before_after_chart, write_decision_report

        cfg = settings.load()
        labels = inputs.pop("validated_labels")
        export_values = [inputs.pop(k) for k in export_ins]
        images = pd.read_parquet(labels["images"])
        pool = int((images["split"] == "finetune").sum())
        per_cand = {name: {asset: inputs.get(f"{candidate_key(name)}__{asset}")
                           for asset in INPUTS} for name in candidates}
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
        result = result.with_override(override)

        out_dir = store.run_path("reports", "decision.md").parent
        plots = {}
        for name in candidates:
            if name in finetuned:
                plots[f"before_after_{name}"] = before_after_chart(
                    result.slices, out_dir / "plots" / f"before_after_{candidate_key(name)}.png",
                    candidate=name, title=f"{name}: recall off-the-shelf vs fine-tuned")
        plots.update(_curve_charts(result, evidence, per_cand, out_dir / "plots"))
        summary = candidates_table(result, per_cand, export_verdicts, export_values,
                                   shipped_export)
        shown = summary.assign(sha256=summary["sha256"].str[:12]).rename(
            columns={"sha256": "sha256 (first 12)"})
        paths = write_decision_report(result, out_dir, plots=plots,
                                      evidence={CANDIDATES_TITLE: shown, **export_tables})
        run = _record_decision_run(context, tracker, result, paths)
        champion = _register_champion(context, tracker, result, per_cand, cfg, run, paths, zoo,
                                      export=shipped_export, export_values=export_values)
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
        slices = result.slices
        routed = slices[slices["status"] == "fail"][
            ["candidate", "stage", "slice_column", "slice_value", "metric", "value",
             "failure_kind", "route", "remedy"]]
        o = result.overall
        context.log.info(f"decision: {o.verdict} — {o.candidate} ({o.stage})")
        return dg.Output(jsonable({"verdict": o.verdict, "candidate": o.candidate,
                                   "stage": o.stage, "reasons": list(o.reasons),
                                   "artefact": (shipped_export.description if shipped_export
                                                else None),
                                   "candidates": summary.to_dict(orient="records"),
                                   "report": {k: str(v) for k, v in paths.items()},
                                   "champion": watched, "decided": champion}), metadata={
            "verdict": dg.MetadataValue.text(f"{o.verdict}: {o.candidate} ({o.stage})"),
            "in_production": dg.MetadataValue.json(jsonable(
                watched if watched.get("candidate") else {})),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in o.reasons)),
            "candidates": dg.MetadataValue.md(md_table(shown)),
            "failing_slices_routed": dg.MetadataValue.md(md_table(routed, max_rows=30)),
            "fixed_by_finetune": len(result.fixed), "not_fixed": len(result.not_fixed),
            "not_enough_evidence": len(result.not_enough_evidence),
            # fine-tuned rows a re-run could flip (failing ones are routed uncertain)
            "close_to_the_bar": int(result.slices["close"].astype(bool).sum()),
            **({"exports": dg.MetadataValue.md(md_table(export_tables[EXPORTS_TITLE]))}
               if export_tables else {}),
            "report_html": dg.MetadataValue.path(str(paths["html"])),
            "report_markdown": dg.MetadataValue.path(str(paths["markdown"])),
            **({"champion_model": dg.MetadataValue.text(
                f"{champion['registered_model']} v{champion['version']} @champion")}
               if champion.get("version") else {})})

    return decision


def candidates_table(result, per_cand: dict, export_verdicts: list, export_values: list[dict],
                     shipped_export=None) -> pd.DataFrame:
    """The report's candidate table: one row per candidate (its verdict and the FP32 model the
    verdict is about) and one per exported artefact (held against the same bar), each with the
    sha256 of the exact file -- the exports are candidates too."""
    rows = []
    for v in result.candidates:
        inputs = per_cand[v.name]
        fine = v.stage == FINE_TUNED and inputs.get("finetuned_model")
        weights = (inputs["finetuned_model"]["weights"] if fine
                   else inputs["offtheshelf_eval"]["weights"])
        rows.append({
            "candidate": v.name, "artefact": "FP32 model", "verdict": v.verdict,
            "stage": v.stage, "p99 ms": v.latency_p99_ms, "daily cost": v.daily_cost,
            "pass": v.n_pass, "fail": v.n_fail, "not enough evidence": v.n_not_enough,
            "AP50 off-the-shelf": inputs["offtheshelf_eval"]["AP50"],
            "AP50 fine-tuned": (inputs["reeval"] or {}).get("AP50"),
            "sha256": _sha256(weights)})
    values = {(x["candidate"], x["label"], x["source_stage"]): x for x in export_values}
    for e in export_verdicts:
        value = values[(e.candidate, e.label, e.source_stage)]
        shipped = shipped_export is not None and (
            (e.candidate, e.label, e.source_stage) == (shipped_export.candidate,
                                                       shipped_export.label,
                                                       shipped_export.source_stage))
        fine = e.source_stage == FINE_TUNED
        rows.append({
            "candidate": e.candidate, "artefact": e.description,
            "verdict": ("ships" if shipped else "clears the bar" if e.clears_bar
                        else "does not clear the bar"),
            "stage": e.source_stage, "p99 ms": e.latency_p99_ms,
            "daily cost": value.get("daily_cost"), "pass": e.n_pass, "fail": e.n_fail,
            "not enough evidence": e.n_not_enough,
            "AP50 off-the-shelf": None if fine else value.get("AP50"),
            "AP50 fine-tuned": value.get("AP50") if fine else None,
            "sha256": e.sha256})
    return pd.DataFrame(rows)


def _curve_charts(result, evidence, per_cand: dict, folder) -> dict:
    """A learning-curve chart for each failing row that has a curve (the nested-subset
    fine-tunes evaluated on that row), named ``learning_curve_<candidate>_<row>``."""
    from preflight.decide.evidence import curve_points
    from preflight.decide.rule import KEY, slice_label
    from preflight.report.decision import learning_curve_chart

    out = {}
    s = result.slices
    failing = s[(s["status"] == "fail")].drop_duplicates(["candidate", *KEY])
    # overall and per-class rows first, then the worst slices; a few charts per candidate
    failing = failing.assign(_order=(failing["slice_column"] != OVERALL).astype(int))
    failing = failing.sort_values(["candidate", "_order", "value"]).groupby("candidate").head(
        MAX_CURVE_CHARTS)
    by_name = {c.name: c for c in evidence}
    for _, r in failing.iterrows():
        cand = by_name[r["candidate"]]
        key = (r["slice_column"], r["slice_value"], r["metric"])
        fit = cand.learning_curves.get(key)
        curve = per_cand[cand.name].get("learning_curve")
        if fit is None or not curve:
            continue
        pts = curve_points(_read(curve["tables"]["points"]))
        if pts is None:
            continue
        pts = pts[(pts["slice_column"] == key[0]) & (pts["slice_value"] == key[1])
                  & (pts["metric"] == key[2])]
        label = slice_label(*key)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"learning_curve_{candidate_key(cand.name)}_"
                                                   f"{label}").strip("_")
        out[name] = learning_curve_chart(
            pts, fit, float(r["bar"]), folder / f"{name}.png",
            title=f"{cand.name}: {label} vs the number of fine-tuning images")
    return out


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
    """The exports' verdicts against the bar, and their report tables: latency against the FP32
    source, and the per-slice recall deltas (paired over the same frames). An off-the-shelf
    export is blocked, whatever its metrics, by what blocks an off-the-shelf model in the FP32
    rule: operational classes with no analog in pre-training, and recall below the bar under
    stress at a family's expected severity (the export's own stress results)."""
    from preflight.decide import CandidateEvidence
    from preflight.decide.exports import ExportEvidence, assess_exports, exports_table
    from preflight.decide.rule import stress_conditions

    if not values:
        return [], {}

    def blocking(v: dict) -> tuple[str, ...]:
        if v["source_stage"] == FINE_TUNED:
            return ()
        missing = per_cand[v["candidate"]]["offtheshelf_eval"].get("no_analog") or []
        # the export's own stress results at the expected severity (quantisation can change
        # robustness), as the off-the-shelf model's block it
        stressed, _ = stress_conditions(CandidateEvidence(
            v["candidate"], pd.DataFrame(), latency_p99_ms=0.0,
            stress=_read(v["tables"].get("stress"))), bar)
        return ((f"no analog in pre-training: {', '.join(missing)}",) if missing else ()) + (
            (f"recall below the bar under stress at the expected severity: "
             f"{'; '.join(stressed[:3])}{' ...' if len(stressed) > 3 else ''}",)
            if stressed else ())

    evidence = [ExportEvidence(
        candidate=v["candidate"], label=v["label"], description=v["description"],
        source_stage=v["source_stage"], metrics=pd.read_parquet(v["tables"]["metrics"]),
        latency_p99_ms=v["production_p99_ms"],
        source_latency_p99_ms=v["source_production_p99_ms"], weights=v["weights"],
        sha256=v["sha256"], daily_cost=v.get("daily_cost"), blocking=blocking(v))
        for v in values]
    verdicts = assess_exports(evidence, bar)
    columns = ["export", "slice_column", "slice_value", "metric", "source", "export_value",
               "delta", "delta_ci_low", "delta_ci_high", "changed", "export_status"]
    deltas = []
    for v in values:  # every slice's recall; per-class rows where they changed or fail the bar
        d = pd.read_parquet(v["tables"]["deltas"]).rename(columns={"export": "export_value"})
        d = d[(d["metric"] == "recall") | d["changed"] | d["below_bar"]]
        deltas.append(d.assign(export=v["description"])[columns])
    table = pd.concat(deltas, ignore_index=True)
    from preflight.decide.rule import slice_label  # rows by their human names (no sentinels)

    table.insert(1, "slice", [slice_label(*k) for k in table[
        ["slice_column", "slice_value", "metric"]].itertuples(index=False)])
    table = table.drop(columns=["slice_column", "slice_value", "metric"])
    for col in ("source", "export_value", "delta", "delta_ci_low", "delta_ci_high"):
        table[col] = table[col].round(3)
    summary = exports_table(verdicts)
    summary[CHANGED_COLUMN] = [changed_recall(pd.read_parquet(v["tables"]["deltas"]))
                               for v in values]
    return verdicts, {EXPORTS_TITLE: summary, DELTAS_TITLE: table}


def changed_recall(deltas: pd.DataFrame) -> str:
    """The recall rows (overall, per class, per slice) whose paired interval of the
    export-minus-source difference excludes 0, as ``slice delta [low, high]``; "none" if none."""
    from preflight.decide.rule import slice_label

    rows = deltas[deltas["metric"].str.startswith("recall") & deltas["changed"]]
    return "; ".join(
        f"{slice_label(r.slice_column, r.slice_value, r.metric)} {r.delta:+.3f} "
        f"[{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]"
        for r in rows.sort_values("delta").itertuples()) or "none"


def _register_champion(context, tracker: MlflowTracker, result, per_cand: dict, cfg,
                       run: dict, paths: dict, zoo: ModelZoo, export=None,
                       export_values: list[dict] = ()) -> dict:
    """Register the chosen model (alias ``champion``) on the decision's run -- only when the
    verdict ships it; otherwise no alias moves (monitoring keeps watching the model in
    production) and the record says what to do next. An export that ships is registered as the
    exact file that was validated (its sha256 in the tags and the record)."""
    o = result.overall
    chosen, stage, verdict = o.candidate, o.stage, o.verdict
    if getattr(result, "override", None):
        chosen = result.override
        stage = result.candidate(chosen).stage
        verdict = f"operator override ({o.verdict})"
    elif not result.ships or o.verdict not in SHIPPING_VERDICTS:
        return {"candidate": None, "verdict": o.verdict, "considered": o.candidate,
                "reason": f"{o.verdict}: nothing ships, the champion alias does not move",
                "next": list(o.reasons)}
    inputs = per_cand[chosen]
    fine = stage == FINE_TUNED and inputs.get("finetuned_model")
    weights = inputs["finetuned_model"]["weights"] if fine else inputs["offtheshelf_eval"]["weights"]
    metrics_path = (inputs["reeval"] if fine else inputs["offtheshelf_eval"])["tables"]["metrics"]
    sha256 = _sha256(weights)
    if export is not None and chosen == export.candidate:
        weights, sha256 = export.weights, export.sha256
        metrics_path = next(v["tables"]["metrics"] for v in export_values
                            if (v["candidate"], v["label"], v["source_stage"])
                            == (export.candidate, export.label, export.source_stage))
        if _sha256(weights) != sha256:
            raise dg.Failure(f"{weights} changed since it was validated (sha256 "
                             f"{sha256[:12]} recorded); refusing to register it")
    else:
        export = None
    artefact = export.description if export else "FP32 model"
    name = cfg.decision.registered_model_name
    family = zoo.candidate(chosen).family
    if export is not None:  # the runtime of the exported file, as load_exported picks it
        family = "openvino" if str(weights).endswith(".xml") else "onnxruntime"
    record = jsonable({
        "candidate": chosen, "stage": stage, "verdict": verdict,
        "weights": weights, "sha256": sha256, "artefact": artefact,
        "export": export.label if export else None,
        "metrics": metrics_path, "registered_model": name,
        "mlflow_run_id": run["mlflow_run_id"],
        "input_size": inputs["offtheshelf_eval"]["input_size"], "family": family,
        # a fine-tuned checkpoint speaks the operational taxonomy; an off-the-shelf one is
        # mapped; an export carries its map in its sidecar
        "class_map": None if (fine or export) else zoo.candidate(chosen).class_map,
        "taxonomy": list(cfg.taxonomy)})
    version = tracker.register_champion(  # an MLflow pyfunc model: load it by its alias
        run["mlflow_run_id"], name=name, checkpoint=weights, record=record,
        decision_json=paths["json"], alias="champion",
        description=f"{verdict}: {chosen} ({stage}, {artefact}). " + " ".join(o.reasons)[:4000],
        tags={"candidate": chosen, "stage": str(stage), "verdict": verdict, "sha256": sha256,
              "artefact": artefact,
              # the class list the model's outputs mean (the settings' taxonomy, in id order)
              "taxonomy": ",".join(cfg.taxonomy_obj.names)})
    return {**record, "version": version}


def _sha256(path: str) -> str:
    from pathlib import Path

    from preflight.models.zoo import sha256_file

    return sha256_file(path) if Path(path).is_file() else ""
