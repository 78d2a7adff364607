"""Stage 2: label validation with Great Expectations; bad rows are quarantined with a reason."""


import dagster as dg
import pandas as pd

from assets._md import md_table
from resources import PreflightStore, SettingsResource

#: Asset checks shown in the UI, each backed by one or more Great Expectations expectations.
CHECKS: dict[str, str] = {
    "invalid_fraction_within_limit": "quarantined images stay under validation.max_invalid_fraction",
    "classes_in_taxonomy": "every box's class is in the operational taxonomy",
    "boxes_inside_images": "every box lies inside its image with positive area",
    "no_duplicate_boxes": "no exact duplicate boxes in an image",
    "slice_columns_valid": "required slice columns are present and hold allowed values",
    "image_ids_unique": "image ids (content hashes) are unique",
    "images_decode": "every image decodes",
}


@dg.asset(
    group_name="validation",
    kinds={"great_expectations", "parquet"},
    check_specs=[dg.AssetCheckSpec(name, asset="validated_labels", description=desc)
                 for name, desc in CHECKS.items()],
)
def validated_labels(
    context: dg.AssetExecutionContext,
    ingested_sample: dict,
    settings: SettingsResource,
    store: PreflightStore,
):
    """The ingested tables with invalid rows moved to quarantine (images in = valid + quarantined)."""
    from preflight.data.validate import failure_message, validate_labels

    cfg = settings.load()
    images = pd.read_parquet(ingested_sample["images"])
    boxes = pd.read_parquet(ingested_sample["boxes"])
    ingest_quarantine = pd.read_parquet(ingested_sample["quarantine"])
    required = {k: (set(v) if v is not None else None)
                for k, v in cfg.validation.required_columns.items()}

    result = validate_labels(images, boxes, taxonomy=cfg.taxonomy_obj, required_columns=required,
                             max_invalid_fraction=cfg.validation.max_invalid_fraction,
                             prior_quarantine=ingest_quarantine, raise_on_failure=False)
    missing_required, missing = _missing_columns(context, cfg, images, required)
    paths = {
        "images": str(store.write_table("validated_images", result.images)),
        "boxes": str(store.write_table("validated_boxes", result.boxes)),
        "quarantine": str(store.write_table("quarantine", result.quarantine)),
    }
    metadata = _validation_metadata(result, ingest_quarantine, paths, missing)
    if missing_required:  # every image lacks it: say so first, not as a share of bad rows
        raise dg.Failure(description=(
            f"required column(s) {missing_required} (validation.required_columns) are not in "
            "the data: add them to the sample's metadata table (data.metadata_path, or "
            "metadata.csv / metadata.parquet in the folder, keyed by file_name) or remove them "
            "from validation.required_columns"), metadata=metadata)
    if not result.stats["passed"]:
        # The quarantine is already written: nothing is lost, and the message names the reasons.
        raise dg.Failure(description=failure_message(result.stats, result.quarantine),
                         metadata=metadata)
    yield dg.Output(paths, metadata=metadata)
    yield from check_results(result.expectations, result.stats,
                             cfg.validation.max_invalid_fraction)


def _missing_columns(context: dg.AssetExecutionContext, cfg, images: pd.DataFrame,
                     required: dict) -> tuple[list[str], list[str]]:
    """The required columns the data lacks (an error, raised by the caller) and the other
    configured slice columns it lacks: those are skipped, with one warning, here -- evaluation
    skips them for every candidate."""
    from preflight.evaluation import missing_slice_columns

    missing_required = [c for c in required if c not in images.columns]
    missing = [c for c in missing_slice_columns(cfg.evaluation.slice_columns, images)
               if c not in required]
    if missing:
        context.log.warning(
            f"configured slice column(s) {missing} are not in the data; they are skipped "
            "(list a column under validation.required_columns to make its absence an error). "
            "Pixel-derived and object-size slices are evaluated regardless.")
    return missing_required, missing


def _validation_metadata(result, ingest_quarantine: pd.DataFrame, paths: dict,
                         missing: list[str]) -> dict:
    """What ``validated_labels`` shows in Dagster: the counts, the quarantine's reasons and
    examples, the expectations and the skipped slice columns."""
    stats, quarantine = result.stats, result.quarantine
    reasons = (quarantine.groupby(["stage", "reason_code"]).size().rename("rows")
               .reset_index().sort_values("rows", ascending=False)
               if len(quarantine) else pd.DataFrame(columns=["stage", "reason_code", "rows"]))
    examples = quarantine[["source", "line", "reason"]].head(15) if len(quarantine) else quarantine
    return {
        "images_in": int(stats["images_in"]),
        "images_valid": int(stats["images_valid"]),
        "images_quarantined": int(stats["images_quarantined"]),
        "boxes_in": int(stats["boxes_in"]),
        "boxes_valid": int(stats["boxes_valid"]),
        "boxes_quarantined": int(stats["boxes_quarantined"]),
        "files_quarantined_at_ingestion": len(ingest_quarantine),
        "quarantine_reasons": dg.MetadataValue.md(md_table(reasons)),
        "quarantine_examples": dg.MetadataValue.md(md_table(examples)),
        "expectations": dg.MetadataValue.md(md_table(result.expectations)),
        "quarantine_table": dg.MetadataValue.path(paths["quarantine"]),
        "missing_slice_columns": dg.MetadataValue.md(
            f"**warning**: configured slice column(s) {', '.join(missing)} not in the data; "
            "skipped" if missing else "none"),
    }


#: check -> the reason codes of the Great Expectations rules behind it
CHECK_CODES: dict[str, set[str]] = {
    "classes_in_taxonomy": {"unknown_class_id", "unknown_class_name"},
    "boxes_inside_images": {"null_coordinate", "negative_coordinate", "non_positive_size",
                            "out_of_bounds", "bad_value", "unknown_image_id"},
    "no_duplicate_boxes": {"duplicate_box", "duplicate_box_id"},
    "slice_columns_valid": {"missing_column", "missing_slice_value", "bad_slice_value",
                            "bad_split"},
    "image_ids_unique": {"duplicate_image", "missing_image_id"},
    "images_decode": {"undecodable_image", "bad_size"},
}


def check_results(expectations: pd.DataFrame, stats: dict, max_invalid_fraction: float):
    """One AssetCheckResult per check, from the Great Expectations result table."""
    invalid = stats["images_quarantined"] / max(stats["images_in"], 1)
    yield dg.AssetCheckResult(
        check_name="invalid_fraction_within_limit",
        passed=invalid <= max_invalid_fraction,
        metadata={"invalid_fraction": float(invalid), "limit": max_invalid_fraction})
    for name in CHECKS:
        if name == "invalid_fraction_within_limit":
            continue
        codes = CHECK_CODES.get(name, set())
        rows = (expectations[expectations["reason_code"].isin(codes)] if len(expectations)
                else expectations)
        unexpected = int(rows["unexpected_count"].sum()) if len(rows) else 0
        yield dg.AssetCheckResult(
            check_name=name,
            # Failing rows were quarantined, so the check warns rather than errors: the
            # validated tables are clean, but somebody should look at the source data.
            passed=bool(rows["success"].all()) if len(rows) else True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unexpected_rows": unexpected, "expectations": len(rows),
                      "details": dg.MetadataValue.md(md_table(rows))})
