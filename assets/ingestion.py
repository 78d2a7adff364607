"""Stage 1: the production sample lands and is ingested into Parquet tables with slice columns."""


from pathlib import Path

import dagster as dg

from assets._md import md_table
from assets._record import jsonable
from resources import PreflightStore, SettingsResource


@dg.asset(group_name="ingestion", kinds={"python"})
def production_sample(
    context: dg.AssetExecutionContext, settings: SettingsResource, store: PreflightStore
) -> dg.Output[dict]:
    """The labelled production sample: the configured landing folder, or the embedded synthetic one.

    The synthetic sample is a deterministic function of its settings, so it is generated once and
    reused while the settings are unchanged.
    """
    from preflight.tasks import task_of

    settings_obj = settings.load()
    cfg = settings_obj.data
    if cfg.landing_dir:
        landing = Path(cfg.landing_dir).expanduser().resolve()
        if not landing.is_dir():
            raise dg.Failure(f"landing folder {landing} does not exist (data.landing_dir in settings)")
        source = "landing folder"
    else:
        from preflight.data.landing import batch_is_complete
        from preflight.synth.generate import generate

        s = cfg.synth
        landing = store.path(
            "landing", f"synth_{s.profile}_n{s.n}_w{s.weeks}_s{s.seed}_{s.image_size}px")
        if not batch_is_complete(landing)[0]:  # absent, or an interrupted generation
            summary = generate(landing, profile=s.profile, n=s.n, weeks=s.weeks, seed=s.seed,
                               image_size=s.image_size)
            context.log.info(f"generated {summary.n_images} images, {summary.n_boxes} boxes "
                             f"in {summary.seconds:.1f}s at {landing}")
        source = f"embedded synthetic sample ({s.profile}, seed {s.seed})"
        # the task's form of the generated frames (e.g. object crops for classification)
        landing, note = task_of(settings_obj.task).call("synthetic_sample", landing,
                                                        settings_obj, context.log.info)
        source += f", {note}" if note else ""
    n_files = sum(1 for p in (landing / "images").rglob("*") if p.is_file()) \
        if (landing / "images").is_dir() else None
    return dg.Output(
        {"path": str(landing), "source": source},
        metadata={"path": dg.MetadataValue.path(str(landing)), "source": source,
                  "image_files": n_files})


@dg.asset(group_name="ingestion", kinds={"pandas", "parquet"})
def ingested_sample(
    context: dg.AssetExecutionContext,
    production_sample: dict,
    settings: SettingsResource,
    store: PreflightStore,
) -> dg.Output[dict]:
    """Images and boxes tables (content-hash ids, slice columns, pixel properties) and the split."""
    from preflight.data.errors import PreflightDataError
    from preflight.tasks import task_of

    cfg = settings.load()
    try:  # the task's reader: YOLO/COCO frames, or a classification sample of crops
        result = task_of(cfg.task).call("read_sample", production_sample["path"], cfg)
    except PreflightDataError as exc:  # an unusable annotations/metadata file: one line
        raise dg.Failure(description=str(exc)) from None
    paths = {
        "images": str(store.write_table("ingested_images", result.images)),
        "boxes": str(store.write_table("ingested_boxes", result.boxes)),
        "quarantine": str(store.write_table("ingestion_quarantine", result.quarantine)),
    }
    split_counts = result.images["split"].value_counts().to_dict() if len(result.images) else {}
    reasons = (result.quarantine["reason_code"].value_counts().rename_axis("reason").reset_index()
               if len(result.quarantine) else result.quarantine)
    context.log.info(f"ingested {len(result.images)} images, {len(result.boxes)} boxes; "
                     f"{len(result.quarantine)} quarantined")
    return dg.Output(
        paths,
        metadata={
            "images": len(result.images),
            "boxes": len(result.boxes),
            "quarantined": len(result.quarantine),
            "split": dg.MetadataValue.json({str(k): int(v) for k, v in split_counts.items()}),
            "quarantine_reasons": dg.MetadataValue.md(md_table(reasons)),
            "images_table": dg.MetadataValue.path(paths["images"]),
            "stats": dg.MetadataValue.json(jsonable(result.stats)),
        },
    )

