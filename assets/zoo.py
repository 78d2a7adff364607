"""Stage 3a: the model zoo -- every candidate's weights; the off-the-shelf evaluation
(``assets.evaluation``) reads them.

``model_zoo`` checks the candidates file and prepares what the stand-ins share (the clean
benchmark images); one ``<candidate>/weights`` asset per candidate then builds that candidate's
demo stand-in (cached, sha256 manifest) when the candidates file names ``zoo:`` weights, or
checks its local checkpoint / hub name. One asset per candidate, so the first candidate's
evaluation starts as soon as its own stand-in is ready rather than after the whole zoo: each is
tagged with a Dagster priority that falls with the candidate's place in the candidates file.
"""

import time

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import candidate_key
from resources import ModelZoo, SettingsResource

#: Dagster's step priority tag: among steps ready at once, the highest runs first.
PRIORITY_TAG = "dagster/priority"


def weights_key(candidate: str) -> dg.AssetKey:
    """The asset key of a candidate's weights (its stand-in when it is a ``zoo:`` one)."""
    return dg.AssetKey([candidate_key(candidate), "weights"])


@dg.asset(group_name="models", kinds={"pytorch"})
def model_zoo(context: dg.AssetExecutionContext, settings: SettingsResource,
              zoo: ModelZoo) -> dg.Output[dict]:
    """The candidates and the zoo folder; when any candidate names ``zoo:`` weights, the clean
    benchmark images their stand-ins are trained on (generated once, cached). Each candidate's
    weights are then its own asset (``<candidate>/weights``)."""
    from preflight.models.candidates import CandidateError
    from preflight.models.zoo import benchmark_data

    cfg = settings.load().zoo
    try:
        candidates = zoo.candidates()
    except CandidateError as exc:  # a mistake in the candidates file: its one line
        raise dg.Failure(description=f"candidates: {' '.join(str(exc).split())}",
                         allow_retries=False) from None
    data = "n/a (no zoo: candidates)"
    if any(c.is_zoo for c in candidates):
        t0 = time.perf_counter()
        data_path, _ = benchmark_data(zoo.directory(), cfg.n_images, cfg.image_size, cfg.seed)
        data = str(data_path)
        context.log.info(f"zoo benchmark data ready in {time.perf_counter() - t0:.0f}s: "
                         f"{data_path}")
    rows = pd.DataFrame([{"candidate": c.name, "weights": c.weights, "input_size": c.input_size}
                         for c in candidates])
    return dg.Output({"zoo_dir": str(zoo.directory()), "candidates": [c.name for c in candidates]},
                     metadata={"candidates": dg.MetadataValue.md(md_table(rows)),
                               "benchmark_data": data,
                               "zoo_dir": dg.MetadataValue.path(str(zoo.directory()))})


def build_candidate_weights_asset(candidate: str, order: int) -> dg.AssetsDefinition:
    """``<candidate>/weights``: the candidate's stand-in built (or found cached) in the zoo, or
    its own checkpoint checked. ``order``: its place in the candidates file (0 first); the
    step's priority is ``-order``, so the first candidate's stand-in is built first and its
    evaluation (priority 0) runs before the next stand-in's training."""

    def weights(run: CandidateRun, model_zoo: dict) -> dg.Output[dict]:
        """The candidate's weights: its demo stand-in trained on the benchmark profile (cached
        by its settings; the log says why it is rebuilt), or its local checkpoint / hub name."""
        from preflight.models.zoo import candidate_weights

        t0 = time.perf_counter()
        got = candidate_weights(run.zoo.candidate(candidate), run.zoo.directory(),
                                run.settings.load().zoo, device=run.zoo.device, report=run.log)
        meta: dict = {}
        if got.is_zoo:
            meta = {"built_now": "yes" if got.built else "no (cached)",
                    "rebuilt_because": got.reason or "n/a", "train_seconds": got.train_seconds,
                    **{f"heldout_{k}": v for k, v in got.held_out.items()}}
            run.log(f"{candidate}: stand-in {'built' if got.built else 'cached'} in "
                    f"{time.perf_counter() - t0:.0f}s, held-out "
                    + ", ".join(f"{k} {v:.3f}" for k, v in got.held_out.items()))
        resolved = got.weights
        value = {"candidate": candidate, "weights": resolved.path, "source": resolved.source,
                 "sha256": resolved.sha256 or ""}
        return dg.Output(value, metadata={"source": resolved.source,
                                          "sha256": (resolved.sha256 or "")[:12],
                                          "weights": dg.MetadataValue.path(resolved.path),
                                          **meta})

    return candidate_asset(candidate, "weights", group="models", inputs=["model_zoo"],
                           body=weights, kinds=("pytorch",),
                           op_tags={PRIORITY_TAG: str(-int(order))})
