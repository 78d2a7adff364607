"""Configuration is read in one place, and a mistake in it is one line wherever it surfaces.

* ``preflight.environment`` is the only library module that touches ``os.environ``, no module
  sets a library's default at import (only where the library is first used), and albumentations
  is imported through ``environment.import_albumentations`` only (it reads
  ``NO_ALBUMENTATIONS_UPDATE`` at its import); the Dagster
  definitions turn a set variable into a Dagster ``EnvVar`` on its resource, and the pass's
  executor is what the environment says (``pass_executor`` has no silent default).
* A mistake in the settings file does not stop the code location from loading (``dagster dev``
  shows the pass, not a stack trace); each run fails on its first step with a
  ``dagster.Failure`` whose description is the one line naming the key.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dagster as dg
import pytest

from preflight import environment

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("preflight", "pipeline", "assets", "resources")
ENV_ACCESS = re.compile(r"\bos\.(environ|getenv|putenv|unsetenv)\b|\bgetenv\(")


def test_only_preflight_environment_touches_the_process_environment():
    found = []
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "preflight" / "environment.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if ENV_ACCESS.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "read the environment through preflight.environment:\n" + "\n".join(found)


def _library_modules():
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8"))


def _import_time_nodes(tree: ast.Module):
    """The nodes that run when the module is imported (not inside a function body)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(node.decorator_list if not isinstance(node, ast.Lambda) else [])
            todo.extend(d for d in getattr(node.args, "defaults", []))
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


ENV_SETTERS = {"library_default", "use_config_file", "use_dagster_home", "set_ultralytics_env"}


def test_no_module_changes_the_environment_at_import_and_albumentations_has_one_door():
    at_import, direct = [], []
    for path, tree in _library_modules():
        for node in _import_time_nodes(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in ENV_SETTERS:
                    at_import.append(f"{path}:{node.lineno}: {name}()")
        if path == Path("preflight/environment.py"):
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "albumentations" for n in names):
                direct.append(f"{path}:{node.lineno}")
    assert not at_import, "set library defaults where the library is first used:\n" + \
        "\n".join(at_import)
    assert not direct, "import albumentations through environment.import_albumentations:\n" + \
        "\n".join(direct)


def test_the_executor_comes_from_the_environment_and_has_no_silent_default(monkeypatch):
    from pipeline.jobs import pass_executor

    with pytest.raises(TypeError):
        pass_executor()  # type: ignore[call-arg]
    monkeypatch.delenv("PREFLIGHT_EXECUTOR", raising=False)
    monkeypatch.delenv("PREFLIGHT_MAX_CONCURRENT", raising=False)
    assert environment.executor() == environment.ExecutorChoice("multiprocess", 2)
    monkeypatch.setenv("PREFLIGHT_EXECUTOR", "in_process")
    monkeypatch.setenv("PREFLIGHT_MAX_CONCURRENT", "3")
    assert environment.executor() == environment.ExecutorChoice("in_process", 3)
    assert pass_executor(environment.executor()) is dg.in_process_executor
    for name, bad in (("PREFLIGHT_EXECUTOR", "threads"), ("PREFLIGHT_MAX_CONCURRENT", "two")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(environment.EnvironmentSettingError, match=rf"^{name}=") as err:
            environment.executor()
        assert "\n" not in str(err.value)
        monkeypatch.setenv(name, "in_process" if name == "PREFLIGHT_EXECUTOR" else "2")


def test_the_cli_flag_and_the_variables_resolve_in_one_place(tmp_path, monkeypatch):
    from preflight.config import load_settings, preflight_home

    config = tmp_path / "mine.yaml"
    config.write_text("bar: {min_slice_recall: 0.42}\n")
    monkeypatch.setenv("PREFLIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFLIGHT_CONFIG", "")  # restored after the test
    environment.use_config_file(config)  # what `preflight run --config mine.yaml` does
    assert environment.config_file() == str(config.resolve())
    assert load_settings().bar.min_slice_recall == 0.42
    assert preflight_home() == environment.home() == (tmp_path / "home").resolve()
    with pytest.raises(KeyError):
        environment.value("HOME")  # not one of Preflight's variables


MISTAKES = [
    ("bar: abc\n", "bar"),
    ("decision: {bar: 0.5}\n", "decision: unknown key(s) ['bar']"),
    ("bar: {min_slice_recall: high}\n", "bar.min_slice_recall"),
]


@pytest.mark.parametrize(("text", "key"), MISTAKES, ids=["bar_abc", "unknown_key", "bad_value"])
def test_a_settings_mistake_loads_the_definitions_and_fails_the_run_in_one_line(
        tmp_path, monkeypatch, text, key):
    from pipeline.definitions import build_definitions, settings_problem

    config = tmp_path / "settings.yaml"
    config.write_text(text)
    monkeypatch.setenv("PREFLIGHT_CONFIG", str(config))
    monkeypatch.setenv("PREFLIGHT_HOME", str(tmp_path / "home"))
    problem = settings_problem()
    assert problem is not None and key in problem and "\n" not in problem

    defs = build_definitions()  # what `dagster dev` loads: no exception, no stack trace
    job = defs.resolve_job_def("preflight_pass")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    assert not result.success
    failures = result.get_step_failure_events()
    # the first steps (those with no upstream: the sample, the zoo) fail; nothing else starts
    assert {f.step_key for f in failures} == {"production_sample", "model_zoo"}
    assert not result.get_step_success_events()
    for failure in failures:
        data = failure.step_failure_data
        assert data.error.cls_name == "Failure"
        description = data.user_failure_data.description
        assert description == problem and key in description and str(config) in description
        assert "\n" not in description


def test_a_candidates_file_mistake_fails_the_run_in_one_line(tmp_path, monkeypatch):
    from pipeline.definitions import build_definitions, settings_problem

    candidates = tmp_path / "candidates.yaml"
    candidates.write_text("candidates:\n  - name: x\n    family: no_such_family\n")
    monkeypatch.setenv("PREFLIGHT_CANDIDATES", str(candidates))
    monkeypatch.setenv("PREFLIGHT_HOME", str(tmp_path / "home"))
    problem = settings_problem()
    assert problem is not None and problem.startswith("candidates: ") and "\n" not in problem
    result = build_definitions().resolve_job_def("preflight_pass").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        op_selection=["model_zoo"])
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data.description == problem
