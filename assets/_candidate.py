"""The one factory behind every per-candidate asset (``<candidate>/<asset>``).

A per-candidate asset is a name, a stage (its Dagster group), the assets it reads and a body.
:func:`candidate_asset` makes the Dagster asset: the key prefix and ``candidate`` tag from the
candidate's name, its inputs (shared assets such as ``validated_labels`` by their own key, the
candidate's own by ``[<candidate>, name]``), and the resources every such asset gets --
``settings``, ``store``, ``tracker`` and ``zoo`` -- said here once. The body receives a
:class:`CandidateRun` (the context, the candidate and those resources) and its inputs by name,
and returns the asset's ``dg.Output``; its docstring is the asset's description.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets._record import candidate_key
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource

#: assets every candidate shares, read by their own key (not under the candidate's prefix)
SHARED_INPUTS = frozenset({"validated_labels", "model_zoo"})


@dataclass(frozen=True)
class CandidateRun:
    """One materialisation of one candidate's asset: who it is for, and what it may use."""

    context: dg.AssetExecutionContext
    candidate: str
    settings: SettingsResource
    store: PreflightStore
    tracker: MlflowTracker
    zoo: ModelZoo

    @property
    def key(self) -> str:
        """The candidate's name as an asset-key component (``yolov8n-p2`` -> ``yolov8n_p2``)."""
        return candidate_key(self.candidate)

    @property
    def resources(self) -> dict[str, Any]:
        """``settings``, ``store`` and ``tracker`` as keyword arguments of the stage runners."""
        return {"settings": self.settings, "store": self.store, "tracker": self.tracker}

    def log(self, message: str) -> None:
        self.context.log.info(message)


def candidate_asset(candidate: str, name: str, *, group: str,
                    inputs: Sequence[str] | Mapping[str, str], body: Callable[..., dg.Output],
                    kinds: Sequence[str] = ("pytorch", "mlflow"),
                    deps: Sequence[dg.AssetKey] = (), tags: Mapping[str, str] | None = None,
                    op_tags: Mapping[str, str] | None = None,
                    description: str | None = None) -> dg.AssetsDefinition:
    """The asset ``<candidate>/<name>`` in group ``group``: reads ``inputs`` (shared assets by
    their key, the candidate's own under its prefix; a mapping names the body's argument for
    each asset read, e.g. ``{"source_eval": "reeval"}``), runs after ``deps`` (assets it does
    not read) and runs ``body(run, **inputs)``. ``tags`` are added to the ``candidate`` tag;
    ``description`` replaces the body's docstring as the asset's description."""
    key = candidate_key(candidate)
    reads = dict(inputs) if isinstance(inputs, Mapping) else {n: n for n in inputs}
    ins = {arg: dg.AssetIn(key=src if src in SHARED_INPUTS else [key, src])
           for arg, src in reads.items()}

    def _asset(context: dg.AssetExecutionContext, settings: SettingsResource,
               store: PreflightStore, tracker: MlflowTracker, zoo: ModelZoo,
               **loaded: Any) -> dg.Output[dict]:
        return body(CandidateRun(context, candidate, settings, store, tracker, zoo), **loaded)

    _asset.__doc__ = body.__doc__  # the asset's description, as Dagster reads a docstring
    return dg.asset(name=name, key_prefix=[key], ins=ins, deps=list(deps), group_name=group,
                    kinds=set(kinds), tags={"candidate": key, **(tags or {})},
                    op_tags=dict(op_tags) if op_tags else None,
                    description=description)(_asset)
