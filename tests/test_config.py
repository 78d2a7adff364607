"""The settings file is validated on load: unknown keys and bad values are clear errors."""

from pathlib import Path

import pytest

from preflight.config import ConfigError, load_settings, settings_from_dict


def test_default_settings_file_loads():
    settings = load_settings()
    assert settings.taxonomy[:4] == ["person", "forklift", "pallet", "box"]
    assert 0 < settings.evaluation.operating_threshold < 1
    assert settings.cost.cost_per_missed_object["person"] == 50.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"landing": "x"}}, "data: unknown key(s) ['landing']"),
        ({"evaluation": {"operating_threshold": 1.5}}, "evaluation.operating_threshold"),
        ({"evaluation": {"bootstrap": "many"}}, "evaluation.bootstrap: expected an integer"),
        ({"bar": {"min_recall": {"person": "high"}}}, "bar.min_recall.person: expected a number"),
        ({"data": {"synth": {"profile": "lab"}}}, "data.synth.profile"),
        ({"taxonomy": ["a", "a"]}, "duplicate"),
        ({"nonsense": 1}, "unknown key(s) ['nonsense']"),
    ],
)
def test_bad_settings_are_named(raw, message):
    with pytest.raises(ConfigError) as info:
        settings = settings_from_dict(raw)
        settings.taxonomy_obj  # noqa: B018
    assert message in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_a_settings_file_can_override_a_base_file(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(
        "evaluation: {operating_threshold: 0.3, bootstrap: 50}\ncandidates_file: c.yaml\n")
    (tmp_path / "c.yaml").write_text("candidates: []\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ntask: classify\nevaluation: {bootstrap: 10}\n")
    settings = load_settings(child)
    assert settings.task == "classify"
    assert settings.evaluation.bootstrap == 10            # overridden
    assert settings.evaluation.operating_threshold == 0.3  # inherited, key by key
    assert settings.candidates_file == str(tmp_path / "c.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_settings(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="task"):
        settings_from_dict({"task": "segment"})
