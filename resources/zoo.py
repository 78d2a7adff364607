"""The model zoo as a Dagster resource: the candidates and where checkpoints live.

The taxonomy and the candidates come from the settings resource: inside a run, the snapshot its
first step took (``SettingsResource.snapshot``), so a mid-run edit of the settings or the
candidates file reaches no later step; outside a run, the files as they are now.
"""

from __future__ import annotations

from pathlib import Path

from preflight.models.candidates import Candidate, get_candidate
from preflight.models.registry import adapter_for
from preflight.models.zoo import default_zoo_dir
from preflight.taxonomy import Taxonomy
from resources.settings import RunBoundResource, SettingsResource


class ModelZoo(RunBoundResource):
    """Loads candidates (sha256-checked zoo stand-ins, local checkpoints or hub names)."""

    #: where the taxonomy and the candidates come from (None: ``SettingsResource`` of
    #: ``$PREFLIGHT_CONFIG`` with ``candidates_file``, bound to the run like any other)
    settings: SettingsResource | None = None
    #: a candidates file overriding the settings' when no ``settings`` resource is given (with
    #: one, name it there: ``SettingsResource.candidates_file``)
    candidates_file: str | None = None
    zoo_dir: str | None = None  # None: <home>/zoo
    device: str | None = None  # None: CUDA when present, else CPU

    def settings_resource(self) -> SettingsResource:
        """The settings resource this zoo reads the taxonomy and candidates through."""
        if self.settings is not None:
            if self.candidates_file and self.candidates_file != self.settings.candidates_file:
                raise ValueError("ModelZoo: name the candidates file on its settings resource "
                                 "(SettingsResource.candidates_file), not on the zoo")
            return self.settings
        own = SettingsResource(candidates_file=self.candidates_file)
        own.bind_like(self)  # the run's snapshot
        return own

    def taxonomy(self) -> Taxonomy:
        """The settings' taxonomy: the one class list candidates and models are mapped onto."""
        return self.settings_resource().load().taxonomy_obj

    def candidates(self) -> list[Candidate]:
        """The candidates file's candidates (the run's snapshot of it inside a run)."""
        return self.settings_resource().candidates()

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
