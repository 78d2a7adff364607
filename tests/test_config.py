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
