"""Settings are resolved once per run: every stage of a run sees the settings as they were when
the run started (recorded in the run's tags and on its MLflow parent run), whatever happens to
the file meanwhile; the next run picks an edit up."""

from pathlib import Path

import dagster as dg
import pytest

from resources import MlflowTracker, ModelZoo, SettingsResource
from resources.settings import CANDIDATES_TAG, SETTINGS_FILE_TAG, SETTINGS_TAG


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLIGHT_HOME", str(tmp_path / "home"))
    config = tmp_path / "settings.yaml"
    config.write_text("bar: {min_slice_recall: 0.5}\n")
    return config


def _assets(config: Path):
    @dg.asset
    def evaluated(settings: SettingsResource) -> float:
        seen = settings.load().bar.min_slice_recall
        config.write_text("bar: {min_slice_recall: 0.9}\n")  # someone edits the bar mid-run
        return seen

    @dg.asset
    def decided(context: dg.AssetExecutionContext, evaluated: float,
                settings: SettingsResource, tracker: MlflowTracker) -> float:
        from assets._record import record_run

        record_run(context, tracker, name="decision", stage="decision", candidate="x",
                   params={}, metrics={})
        return settings.load().bar.min_slice_recall

    return [evaluated, decided]


def test_a_mid_run_edit_changes_nothing_for_that_run(world, tmp_path):
    config = world
    tracker = MlflowTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_location=(tmp_path / "artifacts").as_uri(), experiment="s")
    resources = {"settings": SettingsResource(config_path=str(config)), "tracker": tracker}
    with dg.instance_for_test() as instance:
        first = dg.materialize(_assets(config), resources=resources, instance=instance)
        assert first.output_for_node("evaluated") == 0.5
        assert first.output_for_node("decided") == 0.5  # not the 0.9 written mid-run
        tags = instance.get_run_by_id(first.run_id).tags
        assert len(tags[SETTINGS_TAG]) == 64 and tags[SETTINGS_FILE_TAG] == str(config)
        # the snapshot is a file any step process of the run reads (multiprocess, k8s, ...)
        snapshot = SettingsResource(config_path=str(config)).snapshot_path(first.run_id)
        assert '"min_slice_recall": 0.5' in snapshot.read_text()
        # recorded with the run in MLflow: the parent run carries the settings as params
        parent = tracker._parents(first.run_id)[0]
        assert parent.data.params["settings.bar.min_slice_recall"] == "0.5"
        assert parent.data.params["settings.stress.n_images"] == "12"  # a left-out key: default

        second = dg.materialize(_assets(config), resources=resources, instance=instance)
        assert second.output_for_node("decided") == 0.9  # the next run sees the edit
        assert instance.get_run_by_id(second.run_id).tags[SETTINGS_TAG] != tags[SETTINGS_TAG]


CANDIDATES = """candidates:
  - name: {name}
    family: ultralytics
    weights: zoo:{name}
    arch: yolov8n.yaml
    input_size: {size}
    class_map: {{thing: {op}}}
"""


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A settings file with a two-class taxonomy and a candidates file mapping onto it."""
    monkeypatch.setenv("PREFLIGHT_HOME", str(tmp_path / "home"))
    candidates = tmp_path / "candidates.yaml"
    candidates.write_text(CANDIDATES.format(name="first", size=320, op="alpha"))
    config = tmp_path / "settings.yaml"
    config.write_text(f"taxonomy: [alpha, beta]\ncandidates_file: {candidates}\n")
    return config, candidates


def _seen(zoo: ModelZoo) -> dict:
    [cand] = zoo.candidates()
    return {"taxonomy": list(zoo.taxonomy().names), "candidate": cand.name,
            "input_size": cand.input_size, "class_map": cand.class_map}


def _zoo_assets(config: Path, candidates: Path, *, first_step_uses_zoo: bool):
    """``started`` edits both files mid-run (renames the candidate, maps it to a class only the
    new taxonomy has); ``mapped``, a later step, asks the zoo."""

    @dg.asset
    def started(settings: SettingsResource, zoo: ModelZoo) -> dict:
        seen = _seen(zoo) if first_step_uses_zoo else {"bar": settings.load().bar.min_slice_recall}
        config.write_text(f"taxonomy: [alpha, beta, gamma]\ncandidates_file: {candidates}\n")
        candidates.write_text(CANDIDATES.format(name="second", size=640, op="gamma"))
        return seen

    @dg.asset
    def mapped(started: dict, zoo: ModelZoo) -> dict:
        return _seen(zoo)

    return [started, mapped]


@pytest.mark.parametrize(("first_step_uses_zoo", "zoo_has_settings"),
                         [(True, True), (False, True), (True, False)])
def test_a_mid_run_edit_of_the_taxonomy_or_candidates_reaches_no_later_step(
        catalogue, monkeypatch, first_step_uses_zoo, zoo_has_settings):
    """The zoo maps candidates with the run's snapshot, taken at the run's first step even when
    that step never asks for the candidates (a zoo without a settings resource of its own reads
    the same snapshot); the next run sees both edits."""
    config, candidates = catalogue
    settings = SettingsResource(config_path=str(config))
    if not zoo_has_settings:
        monkeypatch.setenv("PREFLIGHT_CONFIG", str(config))
    zoo = ModelZoo(settings=settings) if zoo_has_settings else ModelZoo()
    resources = {"settings": settings, "zoo": zoo}
    before = {"taxonomy": ["alpha", "beta"], "candidate": "first", "input_size": 320,
              "class_map": {"thing": "alpha"}}
    with dg.instance_for_test() as instance:
        first = dg.materialize(_zoo_assets(config, candidates,
                                           first_step_uses_zoo=first_step_uses_zoo),
                               resources=resources, instance=instance)
        if first_step_uses_zoo:
            assert first.output_for_node("started") == before
        assert first.output_for_node("mapped") == before  # not the files written mid-run
        tags = instance.get_run_by_id(first.run_id).tags
        assert len(tags[CANDIDATES_TAG]) == 64  # recorded with the run

        # the next run picks both edits up
        rerun = dg.materialize(_zoo_assets(config, candidates,
                                           first_step_uses_zoo=first_step_uses_zoo),
                               resources=resources, instance=instance)
        after = {"taxonomy": ["alpha", "beta", "gamma"], "candidate": "second",
                 "input_size": 640, "class_map": {"thing": "gamma"}}
        assert rerun.output_for_node("mapped") == after
        assert instance.get_run_by_id(rerun.run_id).tags[CANDIDATES_TAG] != tags[CANDIDATES_TAG]


def test_outside_a_run_the_file_is_read_as_it_is(world):
    settings = SettingsResource(config_path=str(world))
    assert settings.load().bar.min_slice_recall == 0.5
    world.write_text("bar: {min_slice_recall: 0.7}\n")
    assert settings.load().bar.min_slice_recall == 0.7


def test_definitions_take_the_environment_as_envvars(world, monkeypatch):
    """The settings path, home and candidates file reach the resources as Dagster EnvVars,
    read in one place (preflight.environment); the executor too."""
    from pipeline.definitions import ENVIRONMENT, build_resources

    monkeypatch.setenv("PREFLIGHT_CONFIG", str(world))
    resources = build_resources()
    assert isinstance(resources["settings"].config_path, dg.EnvVar)
    assert resources["settings"].config_path.env_var_name == "PREFLIGHT_CONFIG"
    assert isinstance(resources["store"].home, dg.EnvVar)
    # the zoo reads the taxonomy and candidates through the run's settings snapshot
    assert resources["zoo"].settings is resources["settings"]
    monkeypatch.setenv("PREFLIGHT_CANDIDATES", str(world))
    assert build_resources()["settings"].candidates_file.env_var_name == "PREFLIGHT_CANDIDATES"
    assert {"PREFLIGHT_CONFIG", "PREFLIGHT_HOME", "PREFLIGHT_EXECUTOR"} <= set(ENVIRONMENT)
