"""Stage 5b (``decision.second_seed``): the candidate fine-tuned again with another seed, only when
its fine-tuned rows are close to the bar, and evaluated on the same held-out set.

Training is not bit-reproducible across machines, so a fine-tuned row whose interval, widened by
``decision.training_noise``, reaches across the bar could flip on a re-run. With a second seed set,
``<candidate>/finetuned_second_seed`` trains once more (same pool, same augmentation policy,
another seed) and the decision routes such a row only when both runs agree on its pass/fail.
Without close rows it trains nothing and says so.
"""

from dataclasses import replace

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import jsonable
from assets.evaluation import run_evaluation
from assets.finetuning import finetune_pool, train_on
from resources import SettingsResource


class _Seeded:
    """The settings with ``finetune.seed`` replaced (what :func:`train_on` reads)."""

    def __init__(self, settings: SettingsResource, seed: int) -> None:
        self._settings, self._seed = settings, int(seed)

    def load(self):
        cfg = self._settings.load()
        return replace(cfg, finetune=replace(cfg.finetune, seed=self._seed))


def _finetuned_second_seed(run: CandidateRun, validated_labels: dict, offtheshelf_eval: dict,
                           reeval: dict) -> dg.Output[dict]:
    """The candidate fine-tuned with ``decision.second_seed`` and re-evaluated, when rows of
    its fine-tuned evaluation are close to the bar (nothing is trained otherwise)."""
    from preflight.decide import Bar
    from preflight.decide.candidate_tables import close_rows
    from preflight.decide.classify_failure import slice_label
    from preflight.finetune import augmentation_policy, failing_rows

    cfg = run.settings.load()
    seed = int(cfg.decision.second_seed)
    bar = Bar.from_settings(cfg.bar, cfg.decision, stress=cfg.stress)
    close = close_rows(pd.read_parquet(reeval["tables"]["metrics"]), bar)
    labels = [slice_label(*k) for k in
              close[["slice_column", "slice_value", "metric"]].itertuples(index=False)]
    value = {"candidate": run.candidate, "seed": seed, "close_rows": labels, "tables": {}}
    if not labels:
        run.log(f"{run.candidate}: no fine-tuned row is close to the bar; no second run")
        return dg.Output(jsonable(value), metadata={"close_rows": 0, "trained": False})
    run.log(f"{run.candidate}: {len(labels)} row(s) close to the bar; fine-tuning again with "
            f"seed {seed}")
    metrics = pd.read_parquet(offtheshelf_eval["tables"]["metrics"])
    pool, boxes = finetune_pool(validated_labels)
    policy = augmentation_policy(failing_rows(metrics, cfg.bar.min_slice_recall), pool)
    result = train_on(run.context, detector=run.zoo.detector(run.candidate), images=pool,
                      boxes=boxes, settings=_Seeded(run.settings, seed), store=run.store,
                      run_name=f"{run.key}/finetune_seed{seed}", policy=policy)
    out = run_evaluation(run.context, stage=f"finetuned_seed{seed}", name=run.candidate,
                         detector=run.zoo.finetuned_detector(run.candidate, str(result.checkpoint)),
                         validated_labels=validated_labels, **run.resources,
                         params={"seed": seed, "policy": policy.describe()})
    value.update(weights=str(result.checkpoint), tables=out.value["tables"])
    return dg.Output(jsonable(value), metadata={
        "close_rows": len(labels), "trained": True,
        "close": dg.MetadataValue.md(md_table(pd.DataFrame({"row": labels}))),
        "weights": dg.MetadataValue.path(str(result.checkpoint))})


def build_second_seed_asset(candidate: str) -> dg.AssetsDefinition:
    """``<candidate>/finetuned_second_seed``."""
    return candidate_asset(candidate, "finetuned_second_seed", group="reevaluation",
                           inputs=["validated_labels", "offtheshelf_eval", "reeval"],
                           body=_finetuned_second_seed)
