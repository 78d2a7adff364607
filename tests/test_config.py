"""The settings file is validated on load: unknown keys and bad values are clear errors."""

from pathlib import Path

import pytest

from preflight.config import ConfigError, flat_keys, load_settings, settings_from_dict


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


def _demo_world(key: str) -> bool:
    from preflight.config import DEMO_WORLD_KEYS

    for pattern in DEMO_WORLD_KEYS:
        if pattern.endswith(".*"):
            head = pattern[:-2]
            if key.startswith(head + ".") and key != f"{head}.default":
                return True
        elif key == pattern or key.startswith(pattern + "."):
            return True
    return False


def test_left_out_keys_take_the_shipped_values(tmp_path: Path):
    """A minimal settings file gets, key by key, what config/preflight.yaml states -- except the
    keys describing the demo's world, whose defaults stay generic (and are checked as such)."""
    from preflight.config import DEFAULT_CONFIG_PATH

    minimal = tmp_path / "mine.yaml"
    minimal.write_text("# nothing but defaults\n")
    shipped = flat_keys(load_settings(DEFAULT_CONFIG_PATH).to_dict())
    mine = flat_keys(load_settings(minimal).to_dict())
    compared = [k for k in shipped if not _demo_world(k)]
    assert {k for k in mine if not _demo_world(k)} == set(compared)  # the same keys, all of them
    assert len({k.split(".")[0] for k in compared}) >= 15  # every section
    differ = {k: (mine.get(k, "<missing>"), shipped[k]) for k in compared
              if mine.get(k, "<missing>") != shipped[k]}
    assert not differ, differ
    assert len(mine["stress.corruptions"]) == 9  # not silently the whole 45-condition suite
    # the demo world's keys: generic in the code (or, until the taxonomy and metadata columns
    # come from the user's data, the shipped value), never a different world
    for key, value in mine.items():
        if _demo_world(key):
            assert value in ([], {}, None) or value == shipped.get(key), (key, value)
    defaults = load_settings(minimal)
    assert set(defaults.bar.min_recall) == set(defaults.bar.min_precision) == {"default"}
    assert set(defaults.cost.cost_per_missed_object) == {"default"}
    assert defaults.finetune.candidates == [] and defaults.finetune.learning_curve_candidates == []


@pytest.mark.parametrize(("text", "key"), [
    ("stress:\n  severities: [9]\n", "stress.severities"),
    ("latency: {iterations: lots}\n", "latency.iterations: expected an integer"),
    ("evaluation:\n  operating_threshold: 2\n", "evaluation.operating_threshold"),
    ("bar: {min_recall: {default: high}}\n", "bar.min_recall.default: expected a number"),
    ("drift: {psi_warn: 0.5, psi_fail: 0.1}\n", "drift.psi_warn"),
    ("schedule: {timezone: Mars/Olympus}\n", "schedule.timezone"),
    ("stres: {n_images: 4}\n", "unknown key(s) ['stres']"),
    ("1: x\nfoo: 2\n", "unknown key(s) ['1', 'foo']"),
    ("evaluation: [1, 2]\n", "evaluation: expected a mapping"),
    ("data: {synth: {n: 0}}\n", "data.synth.n"),
    ("data: [unclosed\n", "not valid YAML at line 2, column 1"),
    ("- just\n- a list\n", "expected a mapping of settings"),
    (b"taxonomy: [caf\xe9]\n", "not UTF-8 text"),
    ("base: missing.yaml\n", "missing.yaml does not exist"),
])
def test_a_settings_mistake_is_one_line_naming_the_key(tmp_path, monkeypatch, capsys, text, key):
    """Through the CLI, before any command runs: one line on stderr, exit status 2."""
    import pipeline.demo
    from pipeline.cli import main

    path = tmp_path / "settings.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("PREFLIGHT_CONFIG", str(path))
    monkeypatch.setattr(pipeline.demo, "run", lambda args: pytest.fail("settings not checked"))
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("preflight: settings: ") and key in err, err
    assert "\n" not in err and "Traceback" not in err


def test_a_settings_file_that_is_a_folder_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot be read \(Is a directory\)"):
        load_settings(tmp_path)
