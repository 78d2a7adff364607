"""Small helpers for Dagster metadata (Markdown tables from DataFrames)."""


import pandas as pd


def md_table(frame: pd.DataFrame, max_rows: int = 20, floatfmt: str = ".3f") -> str:
    """A Markdown table of the first `max_rows` rows (Dagster renders it in the UI)."""
    if frame.empty:
        return "_(none)_"
    shown = frame.head(max_rows)
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = []
    for _, row in shown.iterrows():
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("" if pd.isna(value) else format(value, floatfmt))
            else:
                cells.append(str(value).replace("|", "\\|").replace("\n", " "))
        rows.append("| " + " | ".join(cells) + " |")
    more = f"\n\n_{len(frame) - max_rows} more rows_" if len(frame) > max_rows else ""
    return "\n".join([header, rule, *rows]) + more
