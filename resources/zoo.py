"""The model zoo as a Dagster resource: the candidates file and where checkpoints live."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from preflight.config import load_settings
from preflight.models.candidates import Candidate, get_candidate, load_candidates
from preflight.models.registry import adapter_for
from preflight.models.zoo import default_zoo_dir
from preflight.taxonomy import Taxonomy


class ModelZoo(dg.ConfigurableResource):
    """Loads candidates (sha256-checked zoo stand-ins, local checkpoints or hub names)."""

    candidates_file: str | None = None  # None: the settings' (EnvVar PREFLIGHT_CANDIDATES if set)
    zoo_dir: str | None = None  # None: <home>/zoo
    device: str | None = None  # None: CUDA when present, else CPU

    def taxonomy(self) -> Taxonomy:
        """The settings' taxonomy: the one class list candidates and models are mapped onto."""
        return load_settings().taxonomy_obj

    def candidates(self) -> list[Candidate]:
        settings = load_settings()
        path = self.candidates_file or settings.candidates_file
        return load_candidates(path, taxonomy=settings.taxonomy_obj)

    def candidate(self, name: str) -> Candidate:
        return get_candidate(self.candidates(), name)

    def directory(self) -> Path:
        return Path(self.zoo_dir).resolve() if self.zoo_dir else default_zoo_dir()

    def detector(self, name: str):
        """The loaded off-the-shelf model of candidate ``name`` (the adapter its family's
        registry row names: a detector or a classifier)."""
        cand = self.candidate(name)
        return adapter_for(cand.family).from_candidate(cand, self.directory(), self.device,
                                                       taxonomy=self.taxonomy())

    def finetuned_detector(self, name: str, weights: str):
        """A fine-tuned checkpoint of candidate ``name`` (it speaks the operational taxonomy), or
        an exported artefact of it (``.onnx`` / ``.xml`` with its sidecar: a champion that is an
        export)."""
        from preflight.models.export import sidecar_path

        if sidecar_path(weights).is_file():
            from preflight.models.exported import load_exported

            return load_exported(weights, name=f"{name}-export", taxonomy=self.taxonomy())
        cand = self.candidate(name)
        return adapter_for(cand.family).from_weights(
            weights, name=f"{name}-finetuned", input_size=cand.input_size, device=self.device,
            taxonomy=self.taxonomy())
