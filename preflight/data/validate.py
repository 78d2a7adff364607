"""Label validation with Great Expectations, and quarantine of what fails.

Two expectation suites run on an ephemeral GE context (``mode="ephemeral"``, pandas source):
one over the images table, then one over the boxes whose image passed. Each expectation is the
authority on pass/fail; the rows it reports (``unexpected_index_list``, result format
``COMPLETE``) are the rows quarantined for it. For uniqueness expectations the first occurrence
(in table order) is kept and only the later copies are quarantined.

Policy:

* A bad image (does not decode, duplicate content id, missing/invalid required slice value)
  quarantines the image **and all its boxes** (``image_quarantined``).
* A bad box (class not in the taxonomy, outside the image, non-positive size, exact duplicate,
  unknown image, ...) quarantines only that box; its image stays valid.
* A required column missing from the table fails ``expect_column_to_exist`` and quarantines every
  row (the column cannot be checked for any row).
* Each quarantined row gets one row in the quarantine table: the first failing rule (in suite
  order) gives ``reason_code``; ``reason`` names the file and line.
* The run fails (``LabelValidationError``) only when the invalid fraction, ``max(quarantined
  images / images in, quarantined boxes / boxes in)`` — counting ingestion-stage quarantine passed
  as ``prior_quarantine`` — exceeds ``max_invalid_fraction``, or when there are no images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from preflight.data.errors import (
    LabelValidationError,
    QuarantineRecord,
    concat_quarantine,
    quarantine_frame,
    reason_counts,
    where,
)
from preflight.taxonomy import Taxonomy

EXPECTATION_COLUMNS = ("table", "expectation", "column", "description", "success",
                       "unexpected_count", "element_count", "quarantined", "reason_code",
                       "error")


@dataclass
class ValidationResult:
    images: pd.DataFrame
    boxes: pd.DataFrame
    quarantine: pd.DataFrame
    expectations: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rule:
    expectation: Any  # a gx.expectations.* instance
    code: str
    description: str
    message: Callable[[pd.Series], str]
    column: str = ""
    keep_first: list[str] | None = None  # uniqueness: keep the first row of each key
    all_rows: bool = False  # table-level (column exists): a failure flags every row
    code_of: Callable[[pd.Series], str] | None = None  # per-row reason code, default ``code``


def _gx():
    from preflight.environment import library_default

    library_default("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def validate_labels(images: pd.DataFrame, boxes: pd.DataFrame, *,
                    taxonomy: Taxonomy,
                    required_columns: Mapping[str, Iterable[Any] | None] | None = None,
                    max_invalid_fraction: float = 0.2,
                    prior_quarantine: pd.DataFrame | None = None,
                    bounds_tolerance_px: float = 1.0,
                    raise_on_failure: bool = True) -> ValidationResult:
    """Validate the ingested tables; see the module doc for the policy."""
    gx = _gx()
    required = dict(required_columns or {})
    context = gx.get_context(mode="ephemeral")
    try:  # GE's tqdm bars would flood logs and the Dagster UI
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # pragma: no cover - other GE versions
        pass
    source = context.data_sources.add_pandas("preflight")
    img = images.reset_index(drop=True)
    img_rules = _image_rules(gx, img, required)
    img_flags, img_exp = _run(gx, context, source, "images", img, img_rules)
    bad_images = img.loc[sorted(img_flags)]
    records = [QuarantineRecord(_img_source(r), code, msg, stage="validation", level="image",
                                image_id=_str(r.get("image_id")))
               for (_, r), (code, msg) in zip(bad_images.iterrows(),
                                              (img_flags[i] for i in bad_images.index),
                                              strict=True)]
    good_images = img.drop(index=list(img_flags))

    bx = boxes.reset_index(drop=True)
    dropped = _boxes_of(bx, bad_images)
    for i in np.flatnonzero(dropped):
        r = bx.iloc[i]
        records.append(QuarantineRecord(
            _box_source(r), "image_quarantined",
            f"{_box_where(r)}: its image was quarantined "
            f"({img_flags[_image_row(bad_images, r)][0]})", stage="validation", level="box",
            image_id=_str(r.get("image_id")), line=_int(r.get("line"))))
    rest = bx[~dropped]
    frame = _box_frame(rest, good_images)
    box_rules = _box_rules(gx, frame, taxonomy, good_images, bounds_tolerance_px)
    box_flags, box_exp = _run(gx, context, source, "boxes", frame, box_rules)
    for pos in sorted(box_flags):
        r = rest.iloc[pos]
        code, msg = box_flags[pos]
        records.append(QuarantineRecord(_box_source(r), code, msg, stage="validation",
                                        level="box", image_id=_str(r.get("image_id")),
                                        line=_int(r.get("line"))))
    good_boxes = rest.drop(index=rest.index[sorted(box_flags)])

    new_q = quarantine_frame(records)
    quarantine = concat_quarantine(prior_quarantine, new_q)
    expectations = pd.DataFrame(img_exp + box_exp, columns=list(EXPECTATION_COLUMNS))
    stats = _stats(img, bx, good_images, good_boxes, new_q, prior_quarantine, quarantine,
                   expectations, max_invalid_fraction)
    result = ValidationResult(good_images.reset_index(drop=True),
                              good_boxes.reset_index(drop=True), quarantine, expectations, stats)
    if raise_on_failure and not stats["passed"]:
        raise LabelValidationError(failure_message(stats, quarantine), stats=stats,
                                   quarantine=quarantine)
    return result


# ------------------------------------------------------------------------------------- running
def _run(gx, context, source, name: str, df: pd.DataFrame, rules: list[Rule]
         ) -> tuple[dict[int, tuple[str, str]], list[dict[str, Any]]]:
    """Run the rules as one suite; ``{row position: (code, message)}`` and the summary rows."""
    suite = context.suites.add(gx.ExpectationSuite(name=f"preflight_{name}",
                                                   expectations=[r.expectation for r in rules]))
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    result = batch.get_batch(batch_parameters={"dataframe": _ge_safe(df)}).validate(
        suite, result_format={"result_format": "COMPLETE"})
    by_id = {r.expectation_config.id: r for r in result.results}
    flags: dict[int, tuple[str, str]] = {}
    summary = []
    for rule, exp in zip(rules, suite.expectations, strict=True):
        res = by_id[exp.id]
        error = _exception_message(res.exception_info)
        if rule.all_rows:
            rows = [] if res.success else list(range(len(df)))
        else:
            rows = list(res.result.get("unexpected_index_list") or [])
        if rule.keep_first and rows:
            later = df.duplicated(subset=rule.keep_first, keep="first")
            rows = [i for i in rows if later.iloc[i]]
        n_new = 0
        for i in rows:
            if i not in flags:
                row = df.iloc[i]
                flags[i] = (rule.code_of(row) if rule.code_of else rule.code, rule.message(row))
                n_new += 1
        summary.append({
            "table": name, "expectation": exp.expectation_type, "column": rule.column,
            "description": rule.description, "success": bool(res.success),
            "unexpected_count": int(res.result.get("unexpected_count", len(rows)) or 0),
            "element_count": int(res.result.get("element_count", len(df)) or len(df)),
            "quarantined": n_new, "reason_code": rule.code, "error": error,
        })
    return flags, summary


def _exception_message(info: Any) -> str | None:
    """The message of an expectation that raised (GE nests it by metric id), else None."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "expectation raised")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "expectation raised")
    return None


def _ge_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Plain numpy/object columns (GE's pandas backend predates some pandas-3 extension types)."""
    out = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_extension_array_dtype(s.dtype):
            if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
                s = s.astype(float)
            else:
                s = s.astype(object).where(s.notna(), None)
        out[col] = s.to_numpy()
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


# --------------------------------------------------------------------------------------- rules
def _image_rules(gx, img: pd.DataFrame, required: dict) -> list[Rule]:
    E = gx.expectations
    rules: list[Rule] = []

    def exists(col: str) -> None:
        rules.append(Rule(E.ExpectColumnToExist(column=col), "missing_column",
                          f"column '{col}' present in the images table",
                          lambda r, c=col: f"{_img_source(r)}: required column '{c}' is missing "
                                           f"from the images table", col, all_rows=True))

    for col in ("image_id", "file_name", "decode_ok", "width", "height"):
        exists(col)
    if not {"image_id", "file_name", "decode_ok", "width", "height"} <= set(img.columns):
        return rules
    first_file = img.drop_duplicates("image_id").set_index("image_id")["file_name"]
    # checks of decoded properties and slices only look at images that decode
    decoded = {"row_condition": "decode_ok==True", "condition_parser": "pandas"}
    rules += [
        Rule(E.ExpectColumnValuesToNotBeNull(column="image_id"), "missing_image_id",
             "every image has a content id", lambda r: f"{_img_source(r)}: no image id",
             "image_id"),
        Rule(E.ExpectColumnValuesToBeInSet(column="decode_ok", value_set=[True]),
             "undecodable_image", "every image decodes",
             lambda r: f"{_img_source(r)}: {r.get('decode_detail') or 'does not decode'}",
             "decode_ok", code_of=lambda r: _str(r.get("decode_error")) or "undecodable_image"),
        Rule(E.ExpectColumnValuesToBeUnique(column="image_id"), "duplicate_image",
             "image content ids are unique (no byte-identical copies)",
             lambda r: f"{_img_source(r)}: same bytes as {first_file.get(r['image_id'])} "
                       f"(image id {r['image_id']}); the first copy is kept",
             "image_id", keep_first=["image_id"]),
    ]
    for col in ("width", "height"):
        rules.append(Rule(E.ExpectColumnValuesToBeBetween(column=col, min_value=1, **decoded),
                          "bad_size", f"{col} >= 1 px",
                          lambda r, c=col: f"{_img_source(r)}: {c} {r[c]} is not positive", col))
    for col, allowed in required.items():
        exists(col)
        if col not in img.columns:
            continue
        rules.append(Rule(E.ExpectColumnValuesToNotBeNull(column=col, **decoded),
                          "missing_slice_value",
                          f"'{col}' given for every image",
                          lambda r, c=col: f"{_img_source(r)}: no value for slice column '{c}' "
                                           f"(missing from the metadata?)", col))
        if allowed is not None:
            values = sorted(allowed, key=str)
            rules.append(Rule(E.ExpectColumnValuesToBeInSet(column=col, value_set=values,
                                                            **decoded),
                              "bad_slice_value", f"'{col}' in {values}",
                              lambda r, c=col, v=values: f"{_img_source(r)}: {c} {r[c]!r} not "
                                                         f"in {v}", col))
    if "split" in img.columns:
        rules.append(Rule(E.ExpectColumnValuesToBeInSet(column="split",
                                                        value_set=["finetune", "eval"],
                                                        **decoded),
                          "bad_split", "split is finetune or eval",
                          lambda r: f"{_img_source(r)}: split {r['split']!r} is not finetune "
                                    f"or eval", "split"))
    return rules


def _box_frame(rest: pd.DataFrame, good_images: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("image_id", "width", "height") if c in good_images.columns]
    frame = rest.reset_index(drop=True)
    if {"image_id", "width", "height"} <= set(cols) and "image_id" in frame.columns:
        dims = good_images[cols].drop_duplicates("image_id").rename(
            columns={"width": "image_width", "height": "image_height"})
        frame = frame.merge(dims, on="image_id", how="left")
    if {"x", "y", "w", "h", "image_width", "image_height"} <= set(frame.columns):
        frame["right_margin"] = frame["image_width"].astype(float) - (frame["x"] + frame["w"])
        frame["bottom_margin"] = frame["image_height"].astype(float) - (frame["y"] + frame["h"])
    return frame


def _box_rules(gx, frame: pd.DataFrame, taxonomy: Taxonomy, good_images: pd.DataFrame,
               tol: float) -> list[Rule]:
    E = gx.expectations
    base = ("image_id", "box_id", "class_id", "x", "y", "w", "h")
    rules = [Rule(E.ExpectColumnToExist(column=c), "missing_column",
                  f"column '{c}' present in the boxes table",
                  lambda r, c=c: f"{_box_where(r)}: required column '{c}' is missing from the "
                                 f"boxes table", c, all_rows=True) for c in base]
    if not set(base) <= set(frame.columns):
        return rules
    n = len(taxonomy)
    ids = sorted(good_images["image_id"].dropna().astype(str).unique().tolist())
    rules += [
        Rule(E.ExpectColumnValuesToBeInSet(column="image_id", value_set=ids), "unknown_image_id",
             "every box belongs to a valid image",
             lambda r: f"{_box_where(r)}: image id {r['image_id']} is not in the images table",
             "image_id"),
        Rule(E.ExpectColumnValuesToBeUnique(column="box_id"), "duplicate_box_id",
             "box ids are unique", lambda r: f"{_box_where(r)}: box id {r['box_id']} repeated",
             "box_id", keep_first=["box_id"]),
        Rule(E.ExpectColumnValuesToNotBeNull(column="class_id"), "unknown_class_id",
             "every box has a class", lambda r: f"{_box_where(r)}: no class id", "class_id"),
        Rule(E.ExpectColumnValuesToBeInSet(column="class_id", value_set=list(range(n))),
             "unknown_class_id", f"class id in the taxonomy (0-{n - 1})",
             lambda r: f"{_box_where(r)}: class id {r['class_id']} not in taxonomy (0-{n - 1})",
             "class_id"),
    ]
    if "class_name" in frame.columns:
        rules.append(Rule(E.ExpectColumnValuesToBeInSet(column="class_name",
                                                        value_set=list(taxonomy.names)),
                          "unknown_class", "class name in the taxonomy",
                          lambda r: f"{_box_where(r)}: class {r['class_name']!r} is not in the "
                                    f"taxonomy {list(taxonomy.names)}", "class_name"))
    for c in ("x", "y", "w", "h"):
        rules.append(Rule(E.ExpectColumnValuesToNotBeNull(column=c), "null_coordinate",
                          f"'{c}' given for every box",
                          lambda r, c=c: f"{_box_where(r)}: box {c} is missing", c))
    for c in ("w", "h"):
        rules.append(Rule(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True),
                          "non_positive_size", f"box {c} > 0",
                          lambda r: f"{_box_where(r)}: box has no area (w={r['w']:g}, "
                                    f"h={r['h']:g})", c))
    for c in ("x", "y"):
        rules.append(Rule(E.ExpectColumnValuesToBeBetween(column=c, min_value=-tol),
                          "negative_coordinate", f"box {c} >= 0 (tolerance {tol:g} px)",
                          lambda r: f"{_box_where(r)}: box starts outside the image "
                                    f"(x={r['x']:.1f}, y={r['y']:.1f}){_dims(r)}", c))
    for c, edge in (("right_margin", "x + w <= width"), ("bottom_margin", "y + h <= height")):
        if c in frame.columns:
            rules.append(Rule(E.ExpectColumnValuesToBeBetween(column=c, min_value=-tol),
                              "out_of_bounds", f"box inside the image: {edge} (+{tol:g} px)",
                              lambda r: f"{_box_where(r)}: box ends outside the image "
                                        f"(x+w={r['x'] + r['w']:.1f}, y+h={r['y'] + r['h']:.1f})"
                                        f"{_dims(r)}", c))
    key = ["image_id", "class_id", "x", "y", "w", "h"]
    rules.append(Rule(E.ExpectCompoundColumnsToBeUnique(column_list=key), "duplicate_box",
                      "no exact duplicate boxes (image, class, x, y, w, h)",
                      lambda r: f"{_box_where(r)}: exact duplicate of an earlier box; the first "
                                f"is kept", ",".join(key), keep_first=key))
    if "iscrowd" in frame.columns:
        rules.append(Rule(E.ExpectColumnValuesToBeInSet(column="iscrowd", value_set=[0, 1]),
                          "bad_value", "iscrowd is 0 or 1",
                          lambda r: f"{_box_where(r)}: iscrowd {r['iscrowd']!r} is not 0 or 1",
                          "iscrowd"))
    if "occluded" in frame.columns:
        rules.append(Rule(E.ExpectColumnValuesToBeBetween(column="occluded", min_value=0,
                                                          max_value=1),
                          "bad_value", "occluded in [0, 1]",
                          lambda r: f"{_box_where(r)}: occluded {r['occluded']!r} not in [0, 1]",
                          "occluded"))
    return rules


# ------------------------------------------------------------------------------------- helpers
def _str(v: Any) -> str | None:
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _img_source(r: pd.Series) -> str:
    src = _str(r.get("source"))
    return src or f"images/{r.get('file_name')}"


def _box_source(r: pd.Series) -> str:
    return _str(r.get("source")) or f"boxes of {r.get('file_name') or r.get('image_id')}"


def _box_where(r: pd.Series) -> str:
    if _str(r.get("source")):
        return where(str(r["source"]), _int(r.get("line")), _str(r.get("source_box_id")))
    return f"box {r.get('box_id')} of image {r.get('image_id')}"


def _dims(r: pd.Series) -> str:
    w, h = r.get("image_width"), r.get("image_height")
    return "" if w is None or pd.isna(w) else f"; image {int(w)}x{int(h)}"


def _boxes_of(bx: pd.DataFrame, bad_images: pd.DataFrame) -> np.ndarray:
    """Boxes that belong to a quarantined image (by image id and, when both have it, file)."""
    if not len(bx) or not len(bad_images) or "image_id" not in bx.columns:
        return np.zeros(len(bx), dtype=bool)
    keys = ["image_id", "file_name"] if ("file_name" in bx.columns
                                         and "file_name" in bad_images.columns) else ["image_id"]
    bad = set(map(tuple, bad_images[keys].astype(str).to_numpy()))
    return np.array([tuple(k) in bad for k in bx[keys].astype(str).to_numpy()], dtype=bool)


def _image_row(bad_images: pd.DataFrame, r: pd.Series) -> int:
    m = bad_images["image_id"].astype(str) == str(r["image_id"])
    if "file_name" in bad_images.columns and "file_name" in r.index:
        m &= bad_images["file_name"].astype(str) == str(r["file_name"])
    return int(bad_images.index[m][0])


def _stats(img, bx, good_images, good_boxes, new_q, prior, quarantine, expectations,
           max_invalid_fraction) -> dict[str, Any]:
    prior = prior if prior is not None else new_q.iloc[0:0]
    prior_img = int((prior["level"] == "image").sum())
    prior_box = int((prior["level"] == "box").sum())
    images_in, boxes_in = len(img) + prior_img, len(bx) + prior_box
    images_q, boxes_q = images_in - len(good_images), boxes_in - len(good_boxes)
    img_frac = images_q / images_in if images_in else 1.0
    box_frac = boxes_q / boxes_in if boxes_in else 0.0
    invalid = max(img_frac, box_frac)
    failed = expectations.loc[~expectations["success"].astype(bool)]
    return {
        "images_in": images_in, "images_valid": len(good_images), "images_quarantined": images_q,
        "boxes_in": boxes_in, "boxes_valid": len(good_boxes), "boxes_quarantined": boxes_q,
        "images_quarantined_ingestion": prior_img, "boxes_quarantined_ingestion": prior_box,
        "files_quarantined": int((quarantine["level"] == "file").sum()),
        "reasons": reason_counts(quarantine[quarantine["level"] != "file"]),
        "file_reasons": reason_counts(quarantine, "file"),
        "image_invalid_fraction": img_frac, "box_invalid_fraction": box_frac,
        "invalid_fraction": invalid, "max_invalid_fraction": max_invalid_fraction,
        "expectations_total": len(expectations), "expectations_failed": len(failed),
        "failed_expectations": [f"{t}.{e}({c})" for t, e, c in
                                failed[["table", "expectation", "column"]].to_numpy()],
        "expectation_errors": [f"{t}.{e}({c}): {m}" for t, e, c, m in expectations.loc[
            expectations["error"].notna(), ["table", "expectation", "column", "error"]].to_numpy()],
        "passed": bool(images_in > 0 and len(img) > 0 and invalid <= max_invalid_fraction
                       and expectations["error"].isna().all()),
    }


def failure_message(stats: dict[str, Any], quarantine: pd.DataFrame) -> str:
    if stats["images_in"] == 0 or stats["images_valid"] + stats["images_quarantined"] == 0:
        return "label validation failed: no images to validate (is the landing folder empty?)"
    if stats["expectation_errors"]:
        return ("label validation failed: expectation(s) could not be evaluated: "
                + "; ".join(stats["expectation_errors"][:3]))
    q = quarantine[quarantine["level"] != "file"]
    worst = list(stats["reasons"].items())[:3]
    parts = []
    for code, count in worst:
        example = q.loc[q["reason_code"] == code, "reason"].iloc[0]
        parts.append(f"{code} ({count}, e.g. {example})")
    return (f"label validation failed: {stats['invalid_fraction']:.0%} of the sample is invalid "
            f"(images {stats['images_quarantined']}/{stats['images_in']}, boxes "
            f"{stats['boxes_quarantined']}/{stats['boxes_in']}; allowed "
            f"{stats['max_invalid_fraction']:.0%}). Worst reasons: " + "; ".join(parts))
