"""The two stages a candidate model is validated at, each spelled once.

A *stage key* (``offtheshelf``, ``finetuned``) names a stage in asset names, run folders, export
stage names and ``export.stages``; a *stage label* (``off-the-shelf``, ``fine-tuned``) is the
value the decision tables, reports and MLflow parameters carry. Code compares and writes these
constants, never the literals.
"""

from __future__ import annotations

OFF_THE_SHELF_KEY = "offtheshelf"
FINE_TUNED_KEY = "finetuned"

OFF_THE_SHELF = "off-the-shelf"
FINE_TUNED = "fine-tuned"

#: stage key -> stage label
STAGE_LABEL: dict[str, str] = {OFF_THE_SHELF_KEY: OFF_THE_SHELF, FINE_TUNED_KEY: FINE_TUNED}
