"""``preflight evaluate``: COCO-exact per-slice evaluation of a detector's results.

    preflight evaluate --gt GT.json --dt DT.json [--slices META.csv|.parquet] --out OUT.csv
                       [--operating-threshold 0.25] [--bootstrap N] [--seed S]

GT is a COCO instances file, DT a COCO results list, META a table with ``image_id`` (or
``file_name``) plus slice columns. OUT receives the long metrics table; a short summary is
printed. Heavy imports happen inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, help="COCO instances JSON (ground truth)")
    parser.add_argument("--dt", required=True, help="COCO results JSON list (detections)")
    parser.add_argument("--slices", help="per-image slice table (.csv or .parquet) with image_id "
                                         "(or file_name) and slice columns")
    parser.add_argument("--out", required=True, help="output long table (.csv or .parquet)")
    parser.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"],
                        help="only bbox is supported")
    parser.add_argument("--operating-threshold", type=float, default=0.25,
                        help="confidence threshold the deployment uses (default 0.25)")
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="image-level bootstrap resamples for AP intervals (default 0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-images", type=int, default=30,
                        help="slices with fewer images are flagged thin")
    parser.add_argument("--min-boxes", type=int, default=50,
                        help="rows with fewer boxes are flagged thin")
    parser.add_argument("--slice-columns", type=_csv_list, default=None,
                        help="comma-separated slice columns (default: every column of --slices "
                             "except ids, file names and paths)")
    parser.add_argument("--box-slice-columns", type=_csv_list, default=None,
                        help="comma-separated box columns (default: size_bin plus truncated / "
                             "occluded_bin when the annotations carry them)")
    parser.add_argument("--errors-out", help="also write the TIDE-style error table here")
    parser.add_argument("--confusion-out", help="also write the confusion table here")
    parser.add_argument("--worst", type=int, default=5, help="worst slices to print (default 5)")


ID_COLUMNS = {"image_id", "file_name", "path", "group_id", "captured_at", "width", "height"}


def _default_slice_columns(meta) -> list[str]:
    cols = []
    for c in meta.columns:
        if c in ID_COLUMNS:
            continue
        s = meta[c]
        if (s.dtype == object or str(s.dtype).startswith("str")) and s.nunique() > 50:
            continue
        cols.append(str(c))
    return cols


def _fmt(v: float) -> str:
    return "  n/a" if v != v else f"{v:5.3f}"


def summary_text(table, worst: int = 5) -> str:
    from preflight.metrics.coco import STAT_NAMES
    from preflight.metrics.slices import OVERALL

    overall = table[(table["slice_column"] == OVERALL)].set_index("metric")["value"]
    n_img = int(table.loc[table["slice_column"] == OVERALL, "n_images"].max())
    lines = [f"overall ({n_img} images)"]
    for i in range(0, 12, 6):
        lines.append("  " + "  ".join(f"{m}={_fmt(overall.get(m, float('nan')))}"
                                      for m in STAT_NAMES[i:i + 6]))
    lines.append("  at the operating point: " + "  ".join(
        f"{m}={_fmt(overall.get(m, float('nan')))}" for m in ("precision", "recall", "F1")))
    sl = table[(table["slice_column"] != OVERALL)]
    for metric in ("AP", "recall"):
        rows = sl[(sl["metric"] == metric) & sl["value"].notna()].sort_values("value")
        if rows.empty:
            continue
        lines.append(f"worst slices by {metric} (thin = too few images/boxes to trust):")
        for r in rows.head(worst).itertuples(index=False):
            ci = "" if r.ci_low != r.ci_low else f" [{r.ci_low:.3f}, {r.ci_high:.3f}]"
            lines.append(f"  {r.slice_column}={r.slice_value}: {r.value:.3f}{ci} "
                         f"({r.n_images} images, {r.n_boxes} boxes{', thin' if r.thin else ''})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from preflight.metrics.confusion import confusion_matrix
    from preflight.metrics.detection import evaluate_index
    from preflight.metrics.errors import error_decomposition
    from preflight.metrics.index import EvaluationIndex
    from preflight.metrics.io import (
        MetricsInputError,
        attach_slices,
        load_coco_gt,
        load_coco_results,
        read_table,
        write_table,
    )

    if args.iou_type != "bbox":
        print(f"error: --iou-type {args.iou_type} is not supported (bbox only)", file=sys.stderr)
        return 2
    if not 0.0 <= args.operating_threshold <= 1.0 or args.bootstrap < 0:
        print("error: --operating-threshold must be in [0, 1] and --bootstrap >= 0",
              file=sys.stderr)
        return 2
    try:
        coco = load_coco_gt(args.gt)
        dt = load_coco_results(args.dt, image_ids=coco.images["image_id"],
                               class_ids=list(coco.class_names))
        images = coco.images
        slice_columns = args.slice_columns or []
        if args.slices:
            meta = read_table(args.slices)
            images = attach_slices(images, meta, src=str(args.slices))
            if args.slice_columns is None:
                slice_columns = _default_slice_columns(meta)
        box_cols = args.box_slice_columns
        if box_cols is None:
            box_cols = ["size_bin"] + [c for c, src in (("truncated", "truncated"),
                                                        ("occluded_bin", "occluded"))
                                       if src in coco.gt.columns]
        gt = coco.gt
        if pd_is_str(images["image_id"]) and not pd_is_str(gt["image_id"]):
            gt = gt.assign(image_id=gt["image_id"].astype(str))
            dt = dt.assign(image_id=dt["image_id"].astype(str))
        index = EvaluationIndex.build(gt, dt, images, class_names=coco.class_names)
        table = evaluate_index(index, slice_columns=slice_columns, box_slice_columns=box_cols,
                               operating_threshold=args.operating_threshold,
                               bootstrap=args.bootstrap, seed=args.seed,
                               min_images=args.min_images, min_boxes=args.min_boxes)
        out = write_table(table, args.out)
        if args.errors_out:
            write_table(error_decomposition(index, slice_columns=slice_columns,
                                            operating_threshold=args.operating_threshold,
                                            min_images=args.min_images,
                                            min_boxes=args.min_boxes), args.errors_out)
        if args.confusion_out:
            write_table(confusion_matrix(index, slice_columns=slice_columns,
                                         operating_threshold=args.operating_threshold),
                        args.confusion_out)
    except (MetricsInputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(table, args.worst))
    print(f"wrote {len(table)} rows to {out}")
    return 0


def pd_is_str(series) -> bool:
    import pandas as pd

    return not pd.api.types.is_numeric_dtype(series)
