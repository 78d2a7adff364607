"""Stage 3a: the model zoo -- every candidate's weights, the demo stand-ins built (cached) on the
benchmark profile; the off-the-shelf evaluation (``assets.evaluation``) reads them."""

import time

import dagster as dg
import pandas as pd

from assets._md import md_table
from resources import ModelZoo, SettingsResource


@dg.asset(group_name="models", kinds={"pytorch"})
def model_zoo(context: dg.AssetExecutionContext, settings: SettingsResource,
              zoo: ModelZoo) -> dg.Output[dict]:
    """The candidates' weights: the demo stand-ins are built (cached, sha256 manifest) when the
    candidates file names ``zoo:`` weights; local checkpoints and hub names are used as given."""
    from preflight.models.candidates import CandidateError
    from preflight.models.zoo import Manifest, build_zoo

    cfg = settings.load().zoo
    try:
        candidates = zoo.candidates()
    except CandidateError as exc:  # a mistake in the candidates file: its one line
        raise dg.Failure(description=f"candidates: {' '.join(str(exc).split())}",
                         allow_retries=False) from None
    t0 = time.perf_counter()
    if any(c.is_zoo for c in candidates):
        manifest = build_zoo(zoo.directory(), candidates, n_images=cfg.n_images,
                             image_size=cfg.image_size, epochs=cfg.epochs, seed=cfg.seed,
                             batch=cfg.batch, device=zoo.device, progress=False,
                             report=context.log.info)
    else:
        manifest = Manifest.load(zoo.directory())
    rows = pd.DataFrame([{"candidate": c.name, "weights": c.weights, "input_size": c.input_size,
                          "sha256": (manifest.models.get(c.zoo_name or "", {}).get("sha256", "")
                                     or "")[:12],
                          "heldout_mAP50": manifest.models.get(c.zoo_name or "", {})
                          .get("heldout_val", {}).get("map50")} for c in candidates])
    built = (manifest.last_build or {}).get("built", [])
    reasons = (manifest.last_build or {}).get("reasons", {}) if built else {}
    context.log.info(f"zoo ready in {time.perf_counter() - t0:.0f}s; built {built or 'nothing'}")
    return dg.Output({"zoo_dir": str(zoo.directory()), "candidates": [c.name for c in candidates]},
                     metadata={"candidates": dg.MetadataValue.md(md_table(rows)),
                               "built_now": ", ".join(built) or "none (cached)",
                               "rebuilt_because": "; ".join(f"{k}: {v}" for k, v in
                                                            reasons.items()) or "n/a",
                               "zoo_dir": dg.MetadataValue.path(str(zoo.directory()))})
