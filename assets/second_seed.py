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

from assets._md import md_table
from assets._record import candidate_key, jsonable
from assets.evaluation import run_evaluation
from assets.finetuning import finetune_pool, train_on
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource


class _Seeded:
    """The settings with ``finetune.seed`` replaced (what :func:`train_on` reads)."""

    def __init__(self, settings: SettingsResource, seed: int) -> None:
        self._settings, self._seed = settings, int(seed)

    def load(self):
        cfg = self._settings.load()
        return replace(cfg, finetune=replace(cfg.finetune, seed=self._seed))


def build_second_seed_asset(candidate: str) -> dg.AssetsDefinition:
    key = candidate_key(candidate)

    @dg.asset(name="finetuned_second_seed", key_prefix=[key], group_name="reevaluation",
              ins={"validated_labels": dg.AssetIn(key="validated_labels"),
                   "offtheshelf_eval": dg.AssetIn(key=[key, "offtheshelf_eval"]),
                   "reeval": dg.AssetIn(key=[key, "reeval"])},
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def finetuned_second_seed(context: dg.AssetExecutionContext, validated_labels: dict,
                              offtheshelf_eval: dict, reeval: dict, settings: SettingsResource,
                              store: PreflightStore, tracker: MlflowTracker,
                              zoo: ModelZoo) -> dg.Output[dict]:
        """The candidate fine-tuned with ``decision.second_seed`` and re-evaluated, when rows of
        its fine-tuned evaluation are close to the bar (nothing is trained otherwise)."""
        from preflight.decide import Bar
        from preflight.decide.candidate_tables import close_rows
        from preflight.decide.classify_failure import slice_label
        from preflight.finetune import augmentation_policy, failing_rows

        cfg = settings.load()
        seed = int(cfg.decision.second_seed)
        bar = Bar.from_settings(cfg.bar, cfg.decision, stress=cfg.stress)
        close = close_rows(pd.read_parquet(reeval["tables"]["metrics"]), bar)
        labels = [slice_label(*k) for k in
                  close[["slice_column", "slice_value", "metric"]].itertuples(index=False)]
        value = {"candidate": candidate, "seed": seed, "close_rows": labels, "tables": {}}
        if not labels:
            context.log.info(f"{candidate}: no fine-tuned row is close to the bar; no second run")
            return dg.Output(jsonable(value), metadata={"close_rows": 0, "trained": False})
        context.log.info(f"{candidate}: {len(labels)} row(s) close to the bar; fine-tuning "
                         f"again with seed {seed}")
        metrics = pd.read_parquet(offtheshelf_eval["tables"]["metrics"])
        pool, boxes = finetune_pool(validated_labels)
        policy = augmentation_policy(failing_rows(metrics, cfg.bar.min_slice_recall), pool)
        result = train_on(context, detector=zoo.detector(candidate), images=pool, boxes=boxes,
                          settings=_Seeded(settings, seed), store=store,
                          run_name=f"{key}/finetune_seed{seed}", policy=policy)
        detector = zoo.finetuned_detector(candidate, str(result.checkpoint))
        out = run_evaluation(context, stage=f"finetuned_seed{seed}", name=candidate,
                             detector=detector, settings=settings, store=store,
                             tracker=tracker, validated_labels=validated_labels,
                             params={"seed": seed, "policy": policy.describe()})
        value.update(weights=str(result.checkpoint), tables=out.value["tables"])
        return dg.Output(jsonable(value), metadata={
            "close_rows": len(labels), "trained": True,
            "close": dg.MetadataValue.md(md_table(pd.DataFrame({"row": labels}))),
            "weights": dg.MetadataValue.path(str(result.checkpoint))})

    return finetuned_second_seed
