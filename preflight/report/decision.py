"""The decision report: a Markdown file, a self-contained HTML page and the JSON of the call.

The Markdown starts with the verdict, the chosen model and whether the ``champion`` alias moves,
then the evidence: before/after per slice with intervals, every failing or unresolved row with its
evidence, route, remedy and labels needed, look-alike pairs found in the confusion matrix, what
fine-tuning fixed and did not, learning curves, stress, latency and cost, and the rows without
enough evidence with the frames that would decide them. Every count in a sentence is computed
from the table it sits under. The HTML carries the
same sections with its CSS inline and PNG plots embedded as base64 data URIs (no external
references), so it can be mailed or attached to a run as one file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from preflight.decide.learning_curve import N_IMAGES_TRAIN, LearningCurveFit  # noqa: E402
from preflight.decide.rule import (  # noqa: E402
    NOT_ENOUGH,
    ROUTE_DATA,
    ROUTE_MEASURE,
    ROUTE_MODEL,
    ROUTE_RERUN,
    Decision,
    slice_label,
)
from preflight.runs import atomic_write, write_text  # noqa: E402
from preflight.stages import FINE_TUNED, OFF_THE_SHELF  # noqa: E402

MAX_TABLE_ROWS = 200
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:72rem;color:#1b1f24;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1.05rem}
.headline{font-size:1.15rem;background:#f6f8fa;border-left:4px solid #0969da;padding:.7rem 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}
img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0}
.muted{color:#57606a}
"""


# ---------------------------------------------------------------- document blocks


@dataclass(frozen=True)
class _Block:
    kind: str  # heading | paragraph | headline | bullets | table | image
    text: str = ""
    level: int = 2
    items: tuple[str, ...] = ()
    table: pd.DataFrame | None = None
    image: Path | None = None


def _h(text: str, level: int = 2) -> _Block:
    return _Block("heading", text, level=level)


def _p(text: str) -> _Block:
    return _Block("paragraph", text)


def _table_or_none(frame: pd.DataFrame, empty: str) -> _Block:
    return _Block("table", table=frame) if len(frame) else _Block("paragraph", empty)


def _fmt(x: object, digits: int = 2) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float | np.floating):
        return "inf" if math.isinf(x) else f"{x:.{digits}f}"
    return str(x)


def _interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return ""
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _need(value: float, low: float, high: float) -> str:
    if not np.isfinite(value) and not np.isinf(value):
        return ""
    if np.isinf(value):
        return "inf (the curve does not reach the bar)"
    return f"{value:.0f} [{_fmt(low, 0)}, {_fmt(high, 0)}]"


def _labelled(slices: pd.DataFrame) -> pd.Series:
    return pd.Series([slice_label(*k) for k in
                      slices[["slice_column", "slice_value", "metric"]].itertuples(index=False)],
                     index=slices.index, dtype=object)


# ---------------------------------------------------------------- sections


def _headline(decision: Decision) -> str:
    o = decision.overall
    if decision.ships:
        return (f"**Verdict: {o.verdict}.** Chosen model: **{o.candidate}** ({o.stage}); it "
                "becomes the `champion`.")
    if decision.override:
        return (f"**Verdict: {o.verdict}.** No model ships on the evidence; by operator "
                f"override **{decision.override}** becomes the `champion` anyway.")
    considered = f" (closest: **{o.candidate}**, {o.stage})" if o.candidate else ""
    return (f"**Verdict: {o.verdict}.** No model ships{considered}; the `champion` alias does "
            "not move. What to do next is listed below.")


def _fp32_note(decision: Decision) -> list[_Block]:
    """When the chosen model ships as an export while its FP32 model does not, say that the
    table's verdicts are the FP32 models' (the export is what ships)."""
    o = decision.overall
    if not decision.ships:
        return []
    fp32 = next((c for c in decision.candidates if c.name == o.candidate), None)
    if fp32 is None or fp32.ships:
        return []
    return [_p(f"The verdicts below are the FP32 models'. {o.candidate}'s FP32 model does not "
               f"ship ({fp32.verdict}); what ships is its export: {o.reasons[0]}.")]


def _candidates_table(decision: Decision) -> pd.DataFrame:
    rows = [{"candidate": c.name, "verdict": c.verdict, "stage": c.stage,
             "size rank": c.size_rank, "p99 ms": _fmt(c.latency_p99_ms, 0),
             "daily cost": _fmt(c.daily_cost, 0) or "unknown", "pass": c.n_pass, "fail": c.n_fail,
             "not enough evidence": c.n_not_enough,
             "data to use": "; ".join(c.data_to_use),
             "replace with / change": "; ".join(c.replacement)}
            for c in decision.candidates]
    return pd.DataFrame(rows)


def _before_after(slices: pd.DataFrame, candidate: str) -> pd.DataFrame:
    """One row per slice/metric: off-the-shelf and fine-tuned value [interval] and status."""
    rows = slices[slices["candidate"] == candidate].copy()
    rows["slice"] = _labelled(rows)
    rows["estimate"] = [_interval(v, lo, hi) for v, lo, hi in
                        rows[["value", "ci_low", "ci_high"]].itertuples(index=False)]
    out = rows[rows["stage"] == OFF_THE_SHELF][["slice", "bar", "estimate", "status"]]
    out = out.rename(columns={"estimate": OFF_THE_SHELF, "status": "status (ots)"})
    ft = rows[rows["stage"] == FINE_TUNED]
    if len(ft):
        ft = ft[["slice", "bar", "estimate", "status", "fixed_by_finetune"]].rename(
            columns={"estimate": FINE_TUNED, "status": "status (ft)", "fixed_by_finetune":
                     "fixed by fine-tuning"})
        out = out.merge(ft, on=["slice", "bar"], how="outer")
    order = out["slice"].str.startswith(("overall", "class ")).map({True: 0, False: 1})
    out = out.assign(_order=order).sort_values(["_order", "slice"], kind="stable")
    return out.drop(columns="_order").map(_fmt).reset_index(drop=True)


def _failing(slices: pd.DataFrame) -> pd.DataFrame:
    """Failing rows at each candidate's last stage: evidence (estimate, basis), route, remedy
    (for an unresolved row: the measurement that would settle it), labels needed, and whether a
    re-run could flip it."""
    last = slices.groupby("candidate")["stage"].transform(
        lambda s: FINE_TUNED if (s == FINE_TUNED).any() else OFF_THE_SHELF)
    rows = slices[(slices["stage"] == last) & (slices["status"] == "fail")].copy()
    rows["slice"] = _labelled(rows)
    rows["estimate"] = [_interval(v, lo, hi) for v, lo, hi in
                        rows[["value", "ci_low", "ci_high"]].itertuples(index=False)]
    rows["labels needed"] = [_need(*t) for t in rows[
        ["images_needed", "images_needed_low", "images_needed_high"]].itertuples(index=False)]
    rows["close"] = np.where(rows["close"].astype(bool), "yes: could flip on a re-run", "")
    cols = ["candidate", "stage", "slice", "estimate", "bar", "failure_kind", "basis", "route",
            "remedy", "labels needed", "close"]
    return rows[cols].rename(columns={"failure_kind": "kind", "basis": "evidence"}).map(
        _fmt).reset_index(drop=True)


def _route_sentence(failing: pd.DataFrame) -> str:
    """The route counts, from the failing table itself."""
    n = len(failing)
    if not n:
        return "No row fails."
    counts = [(int((failing["route"] == r).sum()), text) for r, text in
              ((ROUTE_DATA, "to data collection"), (ROUTE_MODEL, "to a model change"),
               (ROUTE_MEASURE, "to a measurement first (unresolved)"),
               (ROUTE_RERUN, "to a re-run first (uncertain)"),
               ("fine-tune", "to fine-tuning"))]
    parts = [f"{k} {text}" for k, text in counts if k]
    return f"{n} failing row(s): " + ", ".join(parts) + "."


def _close(slices: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned rows whose interval, widened by the training noise, reaches across the bar:
    their status, and the route of those that are routed (uncertain: re-run first)."""
    rows = slices[slices["close"].astype(bool)].copy()
    rows["slice"] = _labelled(rows)
    rows["estimate"] = [_interval(v, lo, hi) for v, lo, hi in
                        rows[["value", "ci_low", "ci_high"]].itertuples(index=False)]
    cols = ["candidate", "stage", "slice", "estimate", "bar", "status", "failure_kind", "route"]
    return rows[cols].rename(columns={"failure_kind": "kind"}).map(_fmt).reset_index(drop=True)


def _lookalikes(decision: Decision) -> pd.DataFrame:
    t = decision.lookalikes
    if t is None or t.empty:
        return pd.DataFrame()
    def share(r, sfx):
        return _interval(float(r[f"share_{sfx}"]), float(r[f"ci_low_{sfx}"]),
                         float(r[f"ci_high_{sfx}"]))
    return pd.DataFrame([{
        "candidate": r["candidate"], "boxes of": r["true_class"], "detected as": r["pred_class"],
        "off-the-shelf share": share(r, "ots"), "fine-tuned share": share(r, "ft"),
        "status": r["status"], "found by": r["source"]} for _, r in t.iterrows()])


def _stress(decision: Decision) -> tuple[pd.DataFrame, str]:
    rows = [{"candidate": c.name, "condition": text, "role": role}
            for c in decision.candidates
            for role, items in (("blocks shipping off-the-shelf", c.stress_blocking),
                                ("risk", c.stress_risks)) for text in items]
    expected = decision.bar.expected_severity
    note = ("Expected production severity per family: " + ", ".join(
        f"{f} {s}" for f, s in expected.items()) + "." if expected else
        "No expected production severity is set (stress.expected_severity): every condition "
        "below the bar is a risk only.")
    return pd.DataFrame(rows), note


def _label_plan(decision: Decision) -> list[str]:
    return [f"{c.name}: {g}" for c in decision.candidates for g in c.label_plan]


def _fixed_lists(decision: Decision) -> list[_Block]:
    blocks = []
    for name, frame in (("Fixed by fine-tuning", decision.fixed),
                        ("Not fixed by fine-tuning", decision.not_fixed)):
        items = tuple(f"{c}: {label} — {_interval(v, lo, hi)} after fine-tuning ({s})"
                      for c, label, v, lo, hi, s in zip(
                          frame["candidate"], _labelled(frame), frame["value"], frame["ci_low"],
                          frame["ci_high"], frame["status"], strict=True))
        blocks += [_h(name, 3), _Block("bullets", items=items) if items else _p("None.")]
    return blocks


def _curves(decision: Decision) -> pd.DataFrame:
    c = decision.curves
    if c.empty:
        return c
    out = pd.DataFrame({
        "candidate": c["candidate"], "slice": _labelled(c),
        "curve": [f"{a:.3f} - {b:.3g}·n^-{cc:.2f}" for a, b, cc in
                  c[["a", "b", "c"]].itertuples(index=False)],
        "points": c["n_points"], "largest n": c["n_max"].map(lambda x: _fmt(x, 0)),
        "gain from doubling": c["gain_from_doubling"].map(lambda x: _fmt(x, 3)),
        "saturated": c["saturated"], "bar": c["target"].map(_fmt),
        "images needed": [_need(*t) for t in c[["images_needed", "images_needed_low",
                                                "images_needed_high"]].itertuples(index=False)]})
    return out.map(_fmt)


def _latency_cost(decision: Decision) -> pd.DataFrame:
    bar = decision.bar
    ceiling = bar.daily_cost_ceiling
    return pd.DataFrame([{
        "candidate": c.name, "stage": c.stage, "p99 ms": _fmt(c.latency_p99_ms, 0),
        "budget ms": _fmt(float(bar.latency_budget_p99_ms), 0),
        "latency ok": c.latency_p99_ms <= bar.latency_budget_p99_ms,
        "daily cost": _fmt(c.daily_cost, 0) or "unknown",
        "ceiling": "none" if ceiling is None else _fmt(float(ceiling), 0)}
        for c in decision.candidates]).map(_fmt)


def _not_enough(slices: pd.DataFrame) -> pd.DataFrame:
    rows = slices[slices["status"] == NOT_ENOUGH].copy()
    rows["slice"] = _labelled(rows)
    rows["estimate"] = [_interval(v, lo, hi) for v, lo, hi in
                        rows[["value", "ci_low", "ci_high"]].itertuples(index=False)]
    rows["why"] = np.where(rows["thin"].astype(bool), "thin slice", "interval straddles the bar")
    have = pd.to_numeric(rows["n_images"], errors="coerce").astype(float)
    rows["frames needed"] = [
        "" if not np.isfinite(f) and not np.isinf(f) else
        "never at this rate (on the bar)" if np.isinf(f) else
        "thin: up to the evaluation minimum" if np.isfinite(n) and f <= n else
        f"{f:.0f} frames" + (f" / {b:.0f} boxes" if np.isfinite(b) else "") + " in all" +
        (f" ({f - n:.0f} more frames)" if np.isfinite(n) else "")
        for f, b, n in zip(rows["frames_needed"].astype(float),
                           rows["boxes_needed"].astype(float), have, strict=True)]
    cols = ["candidate", "stage", "slice", "estimate", "bar", "n_images", "n_boxes", "why",
            "frames needed"]
    return rows[cols].map(_fmt).reset_index(drop=True)


def _plot_blocks(plots: dict[str, Path], prefix: str | None) -> list[_Block]:
    names = [n for n in plots if (prefix is None or n.startswith(prefix))]
    return [_Block("image", text=n, image=plots[n]) for n in names]


def _document(decision: Decision, evidence: dict[str, pd.DataFrame],
              plots: dict[str, Path], title: str) -> list[_Block]:
    o = decision.overall
    s = decision.slices
    failing = _failing(s)
    blocks = [_h(title, 1), _Block("headline", _headline(decision)),
              _Block("bullets", items=tuple(o.reasons)),
              _h("Candidates"), *_fp32_note(decision),
              _Block("table", table=_candidates_table(decision)),
              _h("Evidence per candidate"),
              _p("Each row is held against the bar through its 95% interval: pass if the lower "
                 "end clears the bar, fail if the upper end is below it, otherwise (or on a thin "
                 "slice) not enough evidence.")]
    for c in decision.candidates:
        blocks += [_h(c.name, 3), _Block("table", table=_before_after(s, c.name))]
    blocks += _plot_blocks(plots, "before_after")
    blocks += [_h("Failing slices: route and remedy"),
               _p("Each failing row's route comes from evidence only: data-solvable when "
                  "fine-tuning fixed it, its learning curve reaches the bar within the pool plus "
                  f"the labelling budget ({decision.bar.labelling_budget_images} images), "
                  "fine-tuning removed its look-alike confusion or its gain covers the "
                  "gap left; architecture-bound when most of its objects are below the pixel "
                  "threshold at model input, its curve levels off below the bar or reaches it "
                  "only beyond the labelling budget even at the optimistic end of its interval, "
                  "a look-alike confusion persists after fine-tuning, or every lighter candidate "
                  "fails it while a heavier one passes; otherwise unresolved, with the "
                  "measurement that would settle it (a curve whose need interval straddles the "
                  "budget is unresolved: the remedy says how many more images to label to "
                  "settle it). A row within the training noise of the bar after "
                  "fine-tuning is uncertain: it goes to a re-run first and counts as neither "
                  "data-solvable nor architecture-bound."),
               _table_or_none(failing, "No failing slice."), _p(_route_sentence(failing))]
    close = _close(s)
    blocks += [_h("Close to the bar (could flip on a re-run)"),
               _p(f"Training is not bit-reproducible across machines: a fine-tuned row whose "
                  f"interval, widened by the training noise ({decision.bar.training_noise:.2f}, "
                  "decision.training_noise), reaches across the bar could pass on one run and "
                  "fail on another. Such a row that failed is routed uncertain (re-run first) "
                  "and counted as neither data-solvable nor architecture-bound, unless a second "
                  "fine-tuning run (decision.second_seed) agrees on its pass/fail."),
               _table_or_none(close, "No fine-tuned row is that close to the bar.")]
    blocks += [_h("Look-alike classes (confusion matrix at the operating point)"),
               _table_or_none(_lookalikes(decision),
                              f"No class pair reaches the look-alike share "
                              f"({decision.bar.lookalike_share:.0%} of one class's boxes "
                              "detected as another).")]
    blocks += [_h("Fixed vs not fixed by fine-tuning"), *_fixed_lists(decision)]
    blocks += [_h("Learning curves"),
               _table_or_none(_curves(decision), "No learning curve was fitted."),
               *_plot_blocks(plots, "learning_curve")]
    stress, note = _stress(decision)
    blocks += [_h("Stress"), _p(note),
               _table_or_none(stress, "No stress condition takes recall below the bar (or no "
                                      "stress results were given).")]
    blocks += [_h("Latency and cost"), _Block("table", table=_latency_cost(decision))]
    plan = _label_plan(decision)
    blocks += [_h("Not enough evidence"),
               _table_or_none(_not_enough(s), "Every row has enough evidence."),
               _h("Label plan (evaluation data)", 3),
               _Block("bullets", items=tuple(plan)) if plan else
               _p("Every operational class and critical slice has enough evidence.")]
    others = [n for n in plots if not n.startswith(("before_after", "learning_curve"))]
    if others:
        blocks += [_h("Other charts"), *(_Block("image", text=n, image=plots[n]) for n in others)]
    for name, frame in evidence.items():
        blocks += [_h(name), _Block("table", table=frame.head(MAX_TABLE_ROWS).map(_fmt))]
    return blocks


# ---------------------------------------------------------------- rendering


def _md_cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_md_cell(x) for x in r) + " |"
            for r in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _markdown(blocks: Sequence[_Block], images: dict[str, str]) -> str:
    out = []
    for b in blocks:
        if b.kind == "heading":
            out.append(f"{'#' * b.level} {b.text}")
        elif b.kind in ("paragraph", "headline"):
            out.append(b.text)
        elif b.kind == "bullets":
            out.append("\n".join(f"- {i}" for i in b.items))
        elif b.kind == "table" and b.table is not None:
            out.append(_md_table(b.table))
        elif b.kind == "image":
            out.append(f"![{b.text}]({images[b.text]})")
    return "\n\n".join(out) + "\n"


def _inline_md(text: str) -> str:
    """Escape, then render ``**bold**`` (the only inline markup the report uses)."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _html(blocks: Sequence[_Block], title: str) -> str:
    body = []
    for b in blocks:
        if b.kind == "heading":
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "headline":
            body.append(f'<p class="headline">{_inline_md(b.text)}</p>')
        elif b.kind == "paragraph":
            body.append(f"<p>{_inline_md(b.text)}</p>")
        elif b.kind == "bullets":
            body.append("<ul>" + "".join(f"<li>{_inline_md(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table" and b.table is not None:
            body.append(b.table.to_html(index=False, escape=True, border=0))
        elif b.kind == "image" and b.image is not None:
            body.append(f'<figure><img alt="{html.escape(b.text)}" src="{_data_uri(b.image)}">'
                        f'<figcaption class="muted">{html.escape(b.text)}</figcaption></figure>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_decision_report(decision: Decision, out_dir: str | Path, *,
                          evidence: dict[str, pd.DataFrame] | None = None,
                          plots: dict[str, Path] | None = None,
                          title: str = "Preflight decision") -> dict[str, Path]:
    """Write ``decision.md``, ``decision.html`` and ``decision.json`` into ``out_dir``.

    ``plots`` (name -> PNG) named ``before_after*`` / ``learning_curve*`` go into those
    sections, others under "Other charts"; they are copied to ``out_dir/plots`` for the Markdown
    and embedded in the HTML. ``evidence`` tables are appended as extra sections.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {name: Path(p) for name, p in (plots or {}).items()}
    missing = [str(p) for p in plots.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"decision report: plot file(s) not found: {missing}")
    images = {name: _copy_plot(path, out / "plots", name) for name, path in plots.items()}
    blocks = _document(decision, evidence or {}, plots, title)
    paths = {"markdown": out / "decision.md", "html": out / "decision.html",
             "json": out / "decision.json"}
    write_text(paths["markdown"], _markdown(blocks, images))
    write_text(paths["html"], _html(blocks, title))
    write_text(paths["json"], json.dumps(decision.to_dict(), indent=2, allow_nan=False))
    return paths


def _copy_plot(path: Path, folder: Path, name: str) -> str:
    """Copy a plot next to the Markdown (unless already there); return its relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return f"plots/{target.name}"


# ---------------------------------------------------------------- charts


def before_after_chart(slices: pd.DataFrame, out_png: str | Path, *, candidate: str | None = None,
                       metric_prefix: str = "recall", title: str = "") -> Path:
    """Per slice: off-the-shelf vs fine-tuned value with 95% interval bars and the bar (red).

    ``slices`` is ``Decision.slices`` (one candidate's rows, or name ``candidate``); rows whose
    metric starts with ``metric_prefix``. Hollow markers: not enough evidence.
    """
    rows = slices if candidate is None else slices[slices["candidate"] == candidate]
    rows = rows[rows["metric"].str.startswith(metric_prefix)]
    keys = rows.drop_duplicates(["candidate", "slice_column", "slice_value", "metric"])
    many = keys["candidate"].nunique() > 1
    labels = [(f"{c}: " if many else "") + slice_label(col, val, m)
              for c, col, val, m in keys[["candidate", "slice_column", "slice_value",
                                          "metric"]].itertuples(index=False)]
    ypos = {tuple(k): i for i, k in enumerate(
        keys[["candidate", "slice_column", "slice_value", "metric"]].itertuples(index=False))}
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.4 * len(keys) + 1.2)))
    for stage, colour, dy in ((OFF_THE_SHELF, "tab:grey", -0.15), (FINE_TUNED, "tab:blue", 0.15)):
        part = rows[rows["stage"] == stage]
        if part.empty:
            continue
        y = np.array([ypos[k] for k in part[["candidate", "slice_column", "slice_value",
                                              "metric"]].itertuples(index=False)]) + dy
        v = part["value"].to_numpy(float)
        err = np.vstack([v - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - v])
        ax.errorbar(v, y, xerr=np.nan_to_num(np.clip(err, 0, None)), fmt="none", ecolor=colour,
                    lw=1.5)
        solid = (part["status"] != NOT_ENOUGH).to_numpy()
        ax.plot(v[solid], y[solid], "o", color=colour, label=stage)
        ax.plot(v[~solid], y[~solid], "o", mfc="white", color=colour)
    bars = keys["bar"].to_numpy(float)
    for i, b in enumerate(bars):
        ax.plot([b, b], [i - 0.4, i + 0.4], color="tab:red", lw=1.5,
                label="bar" if i == 0 else None)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel(metric_prefix)
    ax.set_title(title or f"{metric_prefix}: off-the-shelf vs fine-tuned (95% intervals; hollow ="
                          " not enough evidence)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    if len(keys):
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def learning_curve_chart(points: pd.DataFrame | Sequence[tuple[float, float]],
                         fit: LearningCurveFit, target: float, out_png: str | Path, *,
                         title: str = "") -> Path:
    """The observed points (with intervals when given), the fitted curve, the bar and the images
    needed to reach it (with its interval)."""
    frame = points if isinstance(points, pd.DataFrame) else \
        pd.DataFrame(list(points), columns=[N_IMAGES_TRAIN, "value"])
    frame = frame[frame[N_IMAGES_TRAIN] > 0]
    n = frame[N_IMAGES_TRAIN].to_numpy(float)
    v = frame["value"].to_numpy(float)
    need, low, high = fit.images_needed(target)
    right = max(4 * fit.n_max, min(need * 1.3, 50 * fit.n_max) if np.isfinite(need) else 0)
    grid = np.geomspace(max(n.min() / 2, 1.0), right, 200)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    if {"ci_low", "ci_high"} <= set(frame.columns):
        err = np.vstack([v - frame["ci_low"].to_numpy(float), frame["ci_high"].to_numpy(float) - v])
        ax.errorbar(n, v, yerr=np.nan_to_num(np.clip(err, 0, None)), fmt="o", color="tab:blue",
                    label="fine-tuned on a subset")
    else:
        ax.plot(n, v, "o", color="tab:blue", label="fine-tuned on a subset")
    ax.plot(grid, fit.predict(grid), color="tab:blue", lw=1.5,
            label=f"fit {fit.a:.2f} - {fit.b:.3g}·n^-{fit.c:.2f}")
    ax.axhline(fit.a, color="0.5", ls=":", lw=1, label="asymptote")
    ax.axhline(target, color="tab:red", ls="--", lw=1, label="bar")
    if np.isfinite(need):
        ax.axvline(need, color="tab:green", lw=1, label=f"needed ≈ {need:.0f}")
        if np.isfinite(low) and np.isfinite(high):
            ax.axvspan(low, min(high, right), color="tab:green", alpha=0.12)
    ax.axvline(fit.n_max, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 1)
    ax.set_xlabel("labelled fine-tuning images")
    ax.set_ylabel("metric")
    ax.set_title(title or ("learning curve (saturated)" if fit.saturated else "learning curve"),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
