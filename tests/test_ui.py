"""The product as an operator meets it: `dagster dev` on loopback, runs through the GraphQL API,
the landing sensor through the daemon, and the asset graph in a real (headless) browser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "tiny"
pytestmark = [pytest.mark.server, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`dagster dev` (webserver + daemon) on 127.0.0.1 with a fresh project home."""
    home = tmp_path_factory.mktemp("uihome")
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    template = (REPO / "dagster.yaml").read_text(encoding="utf-8")
    (dagster_home / "dagster.yaml").write_text(template.replace("${DAGSTER_HOME}",
                                                                str(dagster_home)))
    port = _free_port()
    env = {**os.environ, "PREFLIGHT_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "PREFLIGHT_CONFIG": str(FIXTURES / "preflight.yaml"),
           "YOLO_CONFIG_DIR": str(home / "ultralytics"), "YOLO_OFFLINE": "1",
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    log = home / "dagster-dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p",
             str(port), "-w", str(REPO / "workspace.yaml")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/server_info", 240, proc, log)
        yield {"port": port, "home": home, "dagster_home": dagster_home, "log": log}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _client(server):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=server["port"], timeout=60)


def _wait_run(client, run_id: str, timeout: float = 300):
    from dagster import DagsterRunStatus

    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                      DagsterRunStatus.CANCELED):
            return status
        time.sleep(2)
    raise AssertionError(f"run {run_id} still {status} after {timeout}s")


def test_graphql_run_materialises_ingestion_and_validation(server):
    from dagster import DagsterRunStatus

    client = _client(server)
    run_id = client.submit_job_execution("ingest_job")
    assert _wait_run(client, run_id) == DagsterRunStatus.SUCCESS, server["log"].read_text()[-3000:]
    query = """query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
        ... on Asset { assetMaterializations(limit: 1) { runId
            metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""
    data = client._execute(query, {"path": ["validated_labels"]})
    mats = data["assetOrError"]["assetMaterializations"]
    assert mats and mats[0]["runId"] == run_id
    entries = {e["label"]: e.get("intValue") for e in mats[0]["metadataEntries"]}
    assert entries["images_in"] == entries["images_valid"] + entries["images_quarantined"] > 0


def test_landing_sensor_through_the_daemon(server):
    """Three complete weekly batches -> exactly three runs; a half-written one -> none."""
    from preflight.synth.generate import generate

    landing = server["home"] / "landing" / "batches"
    staging = server["home"] / "staging"
    for week in (1, 2, 3):
        generate(staging / f"week{week}", profile="production", n=6, week=week, seed=week,
                 image_size=96, batch_id=f"w{week}")
        shutil.move(str(staging / f"week{week}"), landing / f"week{week}")
    generate(staging / "week4", profile="production", n=6, week=4, seed=4, image_size=96,
             batch_id="w4")
    (staging / "week4" / "_COMPLETE").unlink()  # still being copied
    shutil.move(str(staging / "week4"), landing / "week4")

    query = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name",
        value: "landed_batch_sensor"}]}) { ... on Runs { results { runId tags { key value } } } } }"""
    client = _client(server)
    deadline = time.monotonic() + 240
    runs = []
    while time.monotonic() < deadline:
        runs = client._execute(query)["runsOrError"]["results"]
        if len(runs) >= 3:
            break
        time.sleep(3)
    time.sleep(12)  # further ticks must not add runs
    runs = client._execute(query)["runsOrError"]["results"]
    partitions = sorted(t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition")
    assert partitions == ["week1", "week2", "week3"], server["log"].read_text()[-3000:]


def test_browser_shows_the_asset_graph(server):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no chromium/chromedriver installed (make test installs them with apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        base = f"http://127.0.0.1:{server['port']}"
        # the lineage page: one box per stage group
        assert _page_shows(driver, f"{base}/asset-groups",
                           ("ingestion", "validation", "evaluation", "finetuning", "decision",
                            "monitoring"), server["home"] / "asset_graph.png")
        # the catalog: each of the pipeline's assets on its own page, with its group. (The
        # catalog list itself is virtualised -- only the rows in view are in the DOM -- so
        # whether a name is in it depends on the window size and the number of assets.)
        for key, group in (("validated_labels", "validation"), ("ingested_sample", "ingestion"),
                           ("model_zoo", "models"), ("decision", "decision"),
                           ("drift_report", "monitoring")):
            shown, text = _asset_page_shows(
                driver, base, key, group, server["home"] / f"asset_{key.replace('/', '_')}.png")
            assert shown, f"/assets/{key} does not show the asset in group {group!r}:\n{text}"
    finally:
        driver.quit()


def _page_shows(driver, url: str, names, screenshot: Path, timeout: float = 90) -> bool:
    """Open ``url`` and wait until every name is rendered (a screenshot is kept either way)."""
    driver.get(url)
    deadline = time.monotonic() + timeout
    found = False
    while time.monotonic() < deadline and not found:
        found = all(name in driver.page_source for name in names)
        time.sleep(1)
    driver.save_screenshot(str(screenshot))
    return found


def _asset_page_shows(driver, base: str, key: str, group: str, screenshot: Path,
                      timeout: float = 90) -> tuple[bool, str]:
    """Open the asset's own page and wait until it shows the defined asset: its tabs (which an
    unknown key -- "No assets were found" -- lacks), its name and its group in the Definition
    panel. Returns whether it did and the page's visible text (a screenshot is kept either way)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    url = f"{base}/assets/{key}"
    driver.get(url)
    deadline = time.monotonic() + timeout
    found, text = False, ""
    while time.monotonic() < deadline and not found:
        try:
            tabs = driver.find_elements(By.CSS_SELECTOR, f'a[href$="/assets/{key}?view=overview"]')
            text = driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the page re-rendered under us: look again
            time.sleep(1)
            continue
        lines = [line.strip() for line in text.splitlines()]
        in_group = any(line == "Group" and group in lines[i + 1:i + 3]
                       for i, line in enumerate(lines))
        found = bool(tabs) and key.rsplit("/", 1)[-1] in lines and in_group
        if not found:
            time.sleep(1)
    driver.save_screenshot(str(screenshot))
    return found, text
