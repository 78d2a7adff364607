"""Stage 5b: what ships -- exported and INT8-quantised models through the same pass.

One asset per (candidate, stage, format) (``<candidate>/export_<stage>_<format>``, e.g.
``yolov8n/export_finetuned_onnx_int8``): the candidate's off-the-shelf model, and its fine-tuned
model when it is fine-tuned, exported to each configured format, INT8 calibrated on frames of
the fine-tuning pool, then evaluated on the same held-out set, stressed with the same suite, timed
on its own runtime (batch 1, p50/p95/p99, under load, cold start), and compared slice by slice
with its own FP32 source on the same frames (paired bootstrap). The artefact and its sha256
travel to the decision, which may ship it.
"""

import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run
from assets.evaluation import evaluation_context, run_evaluation, run_latency, run_stress
from preflight.decide.export_evidence import (
    below_bar_rows,
    changed_rows,
    delta_metrics,
    deltas_shown,
)
from preflight.models.export import ExportedArtefact, ExportSpec, parse_spec
from preflight.stages import FINE_TUNED, FINE_TUNED_KEY, OFF_THE_SHELF, OFF_THE_SHELF_KEY

#: export stage (``export.stages``) -> (evaluation, latency) assets of its FP32 source
SOURCE_ASSETS = {OFF_THE_SHELF_KEY: ("offtheshelf_eval", "offtheshelf_latency"),
                 FINE_TUNED_KEY: ("reeval", "reeval_latency")}


def export_plan(stages: list[str], formats: list[str], finetuned: bool
                ) -> list[tuple[str, str]]:
    """The (stage, format) exports of one candidate: every configured stage it has (the
    fine-tuned stage only when the candidate is fine-tuned) times every format."""
    return [(stage, label) for stage in stages if stage != FINE_TUNED_KEY or finetuned
            for label in formats]


def export_asset_name(stage: str, label: str) -> str:
    """``export_<stage>_<format>``: the asset name of one export of a candidate."""
    return f"export_{stage}_{label}"


def build_export_assets(candidate: str, formats: list[str], finetuned: bool,
                        stages: list[str] | tuple[str, ...] = tuple(SOURCE_ASSETS)
                        ) -> list[dg.AssetsDefinition]:
    """One asset per (stage, format) of ``candidate`` (see :func:`export_plan`)."""
    return [_export_asset(candidate, stage, label)
            for stage, label in export_plan(list(stages), formats, finetuned)]


@dataclass(frozen=True)
class ExportJob:
    """One export asset's work: ``candidate``'s model at one stage (fine-tuned or off-the-shelf)
    in one format (``label``, e.g. ``onnx_int8``)."""

    candidate: str
    label: str
    finetuned: bool

    @property
    def spec(self) -> ExportSpec:
        return parse_spec(self.label)

    @property
    def stage_key(self) -> str:
        """``offtheshelf`` / ``finetuned`` (asset names, folders)."""
        return FINE_TUNED_KEY if self.finetuned else OFF_THE_SHELF_KEY

    @property
    def source_stage(self) -> str:
        """``off-the-shelf`` / ``fine-tuned`` (what the decision and the report say)."""
        return FINE_TUNED if self.finetuned else OFF_THE_SHELF

    @property
    def stage(self) -> str:
        """``<stage>-<format>``: the export's stage in its tables and MLflow runs."""
        return f"{self.stage_key}-{self.label}"

    @property
    def description(self) -> str:
        """``INT8 ONNX export of yolov8n (fine-tuned)``."""
        return f"{self.spec.describe()} export of {self.candidate} ({self.source_stage})"


@dataclass(frozen=True)
class ExportInputs:
    """An export asset's inputs: the validated labels, its FP32 source's evaluation and latency,
    and the source model (the fine-tuned model, or the zoo for the off-the-shelf one)."""

    validated_labels: dict
    source_eval: dict
    source_latency: dict
    finetuned_model: dict | None = None
    model_zoo: dict | None = None


@dataclass(frozen=True)
class _Checked:
    """What one export's pass produced: its FP32 source, the file, the loaded export, its
    evaluation, latency and stress outputs, and its paired deltas against the source."""

    source: Any
    artefact: ExportedArtefact
    model: Any
    evaluation: dict
    latency: dict
    stress: dict
    deltas: pd.DataFrame
    deltas_path: str
    source_p99: float  # the FP32 source's production p99 (ms)

    @property
    def speedup(self) -> float:
        p99 = self.latency["production_p99_ms"]
        return self.source_p99 / p99 if p99 else float("nan")


def _export_asset(candidate: str, stage: str, label: str) -> dg.AssetsDefinition:
    job = ExportJob(candidate, label, finetuned=stage == FINE_TUNED_KEY)
    src_eval, src_latency = SOURCE_ASSETS[stage]
    model = "finetuned_model" if job.finetuned else "model_zoo"
    inputs = {"validated_labels": "validated_labels", "source_eval": src_eval,
              "source_latency": src_latency, model: model}

    def export_asset(run: CandidateRun, **loaded: Any) -> dg.Output[dict]:
        """The export's per-slice recall against its FP32 source (paired over the same frames,
        slices below the bar flagged), its latency on its own runtime and the speed-up."""
        return run_export(run.context, job, ExportInputs(**loaded), run)

    return candidate_asset(
        candidate, export_asset_name(stage, label), group="export", inputs=inputs,
        body=export_asset, kinds=("onnx", "mlflow"), tags={"format": label, "stage": stage},
        description=f"{job.spec.describe()} export of {candidate} ({job.source_stage}): "
                    "its per-slice recall against its FP32 source (paired over the same "
                    "frames, slices below the bar flagged), its latency on its own "
                    "runtime and the speed-up.")


def run_export(context, job: ExportJob, inputs: ExportInputs, res: CandidateRun
               ) -> dg.Output[dict]:
    """Export, validate (evaluation, latency, stress, paired deltas against the FP32 source) and
    record one artefact; its output is what the decision weighs."""
    ex = res.settings.load().export
    source = (res.zoo.finetuned_detector(job.candidate, inputs.finetuned_model["weights"])
              if job.finetuned else res.zoo.detector(job.candidate))
    t0 = time.perf_counter()
    artefact, n_calib = _export(job, source, inputs, res)
    export_seconds = time.perf_counter() - t0
    context.log.info(f"{job.description}: {artefact.path.name} (sha256 {artefact.sha256[:12]}) "
                     f"in {export_seconds:.0f}s")
    params = {"format": job.spec.format, "precision": job.spec.precision,
              "runtime": job.spec.runtime, "source_stage": job.source_stage,
              "source_sha256": source.sha256 or "", "calibration_frames": n_calib,
              "calibration_seed": ex.seed, "runtime_threads": _threads(res) or "default"}
    checked = _check(context, job, inputs, res, source, artefact, params)
    p99 = checked.latency["production_p99_ms"]
    metrics = {"speedup_p99": checked.speedup, "latency.production_p99_ms": p99,
               "source.production_p99_ms": checked.source_p99, "export_seconds": export_seconds,
               "slices_changed": float(checked.deltas["changed"].sum()),
               "slices_below_bar": float(checked.deltas["below_bar"].sum()),
               **delta_metrics(checked.deltas)}
    mlflow_meta = record_run(context, res.tracker, name=f"{job.candidate}/{job.stage}-deltas",
                             stage=f"{job.stage}-deltas", candidate=job.candidate,
                             params={**params, "sha256": artefact.sha256,
                                     "artefact": artefact.path.name,
                                     "paired_bootstrap": ex.bootstrap},
                             metrics=metrics,
                             artifacts=[("tables", checked.deltas_path),
                                        ("model", str(artefact.path)),
                                        ("model", str(artefact.sidecar))])
    return _output(job, checked, inputs, mlflow_meta)


def _threads(res: CandidateRun) -> int | None:
    """The exported runtime's threads (``export.threads``, else ``latency.threads``)."""
    cfg = res.settings.load()
    return cfg.export.threads or cfg.latency.threads


def _export(job: ExportJob, source: Any, inputs: ExportInputs, res: CandidateRun
            ) -> tuple[ExportedArtefact, int]:
    """The source model's exported file (INT8: calibrated on frames of the fine-tuning pool,
    never the evaluation set) and the number of calibration frames."""
    from assets.finetuning import finetune_pool
    from preflight.evaluation import read_rgb
    from preflight.models.export import calibration_frames, export_all

    ex = res.settings.load().export
    calib: list = []
    if job.spec.precision == "int8":
        pool, _ = finetune_pool(inputs.validated_labels)
        calib = [read_rgb(p) for p in calibration_frames(pool, ex.calibration_frames, ex.seed)]
    # in this run's folder, one per (stage, format): both stages' files take the source's name,
    # and an INT8 export writes its own FP32 intermediate, which must not overwrite the file the
    # FP32 export validated
    out_dir = res.store.run_path("exports", candidate_key(job.candidate), job.stage_key,
                                 job.label, "x").parent
    artefact = export_all(source, [job.spec], out_dir, calibration=calib, seed=ex.seed)[job.label]
    return artefact, len(calib)


def _check(context, job: ExportJob, inputs: ExportInputs, res: CandidateRun, source: Any,
           artefact: ExportedArtefact, params: dict) -> _Checked:
    """The export through the same pass as its source (evaluation, latency, stress on its own
    runtime) and its per-slice deltas against the source, paired over the same frames, with the
    rows below the bar flagged."""
    from preflight.decide import Bar
    from preflight.decide.exports import flag_deltas
    from preflight.metrics.paired import prediction_deltas
    from preflight.models.exported import load_exported

    cfg = res.settings.load()
    model = load_exported(artefact.path, runtime=job.spec.runtime,
                          name=f"{job.candidate}@{job.label}", threads=_threads(res),
                          sha256=artefact.sha256)
    run = {"stage": job.stage, "name": job.candidate, "detector": model,
           **res.resources,
           "validated_labels": inputs.validated_labels}
    ev = run_evaluation(context, **run, params=params).value
    lat, stress = run_latency(context, **run).value, run_stress(context, **run).value
    _, eval_images, gt, espec = evaluation_context(res.settings, inputs.validated_labels,
                                                   model.input_size)
    deltas = prediction_deltas(
        cfg.task, gt, eval_images, pd.read_parquet(inputs.source_eval["tables"]["predictions"]),
        pd.read_parquet(ev["tables"]["predictions"]), slice_columns=espec.slice_columns,
        box_slice_columns=espec.box_slice_columns,
        operating_threshold=espec.operating_threshold, model_input_size=model.input_size,
        class_names=cfg.taxonomy_obj.as_dict(), bootstrap=cfg.export.bootstrap,
        seed=cfg.export.seed)
    deltas = flag_deltas(deltas, pd.read_parquet(ev["tables"]["metrics"]),
                         Bar.from_settings(cfg.bar, cfg.decision))
    path = res.store.write_table(f"{candidate_key(job.candidate)}/{job.stage}/deltas", deltas)
    return _Checked(source, artefact, model, ev, lat, stress, deltas, str(path),
                    source_p99=inputs.source_latency["production_p99_ms"])


def _output(job: ExportJob, checked: _Checked, inputs: ExportInputs, mlflow_meta: dict
            ) -> dg.Output[dict]:
    """The export's record for the decision (the exact file, its tables, its latency against
    the source) and its metadata."""
    c, ev, src = checked, checked.evaluation, inputs.source_latency
    p99 = c.latency["production_p99_ms"]
    value = {"candidate": job.candidate, "label": job.label, "stage": job.stage,
             "format": job.spec.format, "precision": job.spec.precision,
             "runtime": job.spec.runtime, "description": job.description,
             "source_stage": job.source_stage, "weights": str(c.artefact.path),
             "sha256": c.artefact.sha256, "source_weights": str(c.source.weights),
             "source_sha256": c.source.sha256 or "",
             "tables": {**ev["tables"], "latency": c.latency["tables"]["latency"],
                        **c.stress["tables"], "deltas": c.deltas_path},
             "mean_rpc_recall": c.stress["mean_rpc_recall"], "AP50": ev["AP50"],
             "recall": ev["recall"], "daily_cost": ev["daily_cost"],
             "input_size": c.model.input_size, "production_p99_ms": p99,
             "p99_ms": c.latency.get("p99_ms"), "source_production_p99_ms": c.source_p99,
             "source_p99_ms": src.get("p99_ms"), "speedup_p99": c.speedup,
             "changed_slices": changed_rows(c.deltas), "below_bar_slices": below_bar_rows(c.deltas),
             "mlflow_run_id": mlflow_meta["mlflow_run_id"]}
    return dg.Output(jsonable(value), metadata={
        "artefact": dg.MetadataValue.path(str(c.artefact.path)),
        "sha256": c.artefact.sha256, "p99_ms": p99, "source_p99_ms": c.source_p99,
        "speedup_p99": c.speedup, "recall": ev["recall"],
        "mean_rpc_recall": c.stress["mean_rpc_recall"],
        "slices_changed": len(value["changed_slices"]),
        "slices_below_bar": len(value["below_bar_slices"]),
        "deltas": dg.MetadataValue.md(md_table(deltas_shown(c.deltas), max_rows=30)),
        **mlflow_meta})
