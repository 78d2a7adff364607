"""Which model change to propose for a candidate's failing rows: a heavier candidate only when one
was measured to pass them within the latency budget (and the daily cost ceiling), a lighter one
when the candidate itself is over budget; otherwise what to try. Read by the failure
classification (:mod:`preflight.decide.classify_failure`) and the rule (:mod:`preflight.decide.rule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from preflight.decide.bar import PASS, Bar
from preflight.decide.evidence import CandidateEvidence
from preflight.stages import OFF_THE_SHELF


def heavier_that_fits(cand: CandidateEvidence, bar: Bar, peers: Sequence[CandidateEvidence],
                      keys: Sequence[tuple], peer_status: Mapping[str, Mapping[tuple, str]]
                      ) -> tuple[CandidateEvidence | None, list[CandidateEvidence]]:
    """The lightest heavier candidate measured to pass every row in ``keys`` (at its last stage)
    whose p99 latency fits the budget (and daily cost the ceiling, when set); plus the heavier
    ones that pass them but do not fit. Without ``keys`` nothing is measured: ``(None, [])``."""
    if not keys:
        return None, []
    heavier = sorted((p for p in peers if p.size_rank > cand.size_rank and p.name != cand.name),
                     key=lambda p: (p.size_rank, p.name))
    passing = [p for p in heavier
               if all(peer_status.get(p.name, {}).get(k) == PASS for k in keys)]

    def fits(p: CandidateEvidence) -> bool:
        stage = p.decisive_stage
        cost = p.cost(stage)
        return (p.latency(stage) <= bar.latency_budget_p99_ms and
                (bar.daily_cost_ceiling is None or (np.isfinite(cost)
                                                    and cost <= bar.daily_cost_ceiling)))

    fitting = [p for p in passing if fits(p)]
    return (fitting[0] if fitting else None), [p for p in passing if not fits(p)]


def model_change(cand: CandidateEvidence, bar: Bar, peers: Sequence[CandidateEvidence],
                 keys: Sequence[tuple], peer_status: Mapping[str, Mapping[tuple, str]]) -> str:
    """The model change to propose for rows ``keys``: a heavier candidate only when one was
    measured to pass them within the latency budget; otherwise what to try (no ``: `` or
    ``; `` inside: :func:`grouped_changes` cuts there)."""
    fit, over = heavier_that_fits(cand, bar, peers, keys, peer_status)
    rows = "this row" if len(keys) == 1 else "these rows"
    budget = f"{bar.latency_budget_p99_ms:.0f} ms"
    if fit is not None:
        p99 = fit.latency(fit.decisive_stage)
        return (f"a heavier model ({fit.name}, measured to pass {rows} at p99 {p99:.0f} ms "
                f"within the {budget} budget)")
    seen = "".join(f", {p.name} passes {rows} but its p99 "
                   f"{p.latency(p.decisive_stage):.0f} ms is over budget" for p in over[:2])
    return (f"a model change (no measured candidate passes {rows} within the {budget} "
            f"budget{seen}, so try a higher input size, tiling or a heavier family that fits "
            "the budget)")


def lighter_model(cand: CandidateEvidence, bar: Bar, peers: Sequence[CandidateEvidence]) -> str:
    """The lighter model to propose when ``cand`` is over the latency budget: the lightest peer
    no heavier than it whose off-the-shelf p99 fits the budget, else a lower input size."""
    lighter = sorted((p for p in peers if p.name != cand.name
                      and p.latency(OFF_THE_SHELF) <= bar.latency_budget_p99_ms
                      and p.size_rank <= cand.size_rank),
                     key=lambda p: (p.size_rank, p.latency(OFF_THE_SHELF), p.name))
    return f"a lighter model ({lighter[0].name})" if lighter else \
        "a lighter model or a lower input size"
