"""Drift monitoring on generated data: input, embedding, prediction, performance, report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from preflight.drift import (
    DRIFT_COLUMNS,
    PERFORMANCE_COLUMNS,
    DriftInputError,
    DriftThresholds,
    append_history,
    category_psi,
    colour_histogram_embedding,
    drift_timeseries_chart,
    embed_images,
    embedding_drift,
    history_rows,
    input_drift,
    performance_drift,
    prediction_drift,
    psi,
    psi_level,
    summarise,
)


def image_table(n: int, seed: int, *, brightness: float = 0.5, night: float = 0.3) -> pd.DataFrame:
    """An images table like ingestion's: pixel properties plus slice columns."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image_id": [f"{seed}-{i}" for i in range(n)],
        "brightness": np.clip(rng.normal(brightness, 0.1, n), 0, 1),
        "contrast": rng.gamma(4.0, 0.03, n),
        "sharpness": rng.lognormal(5.0, 1.0, n),
        "colour_cast": rng.exponential(0.02, n),
        "shift": np.where(rng.random(n) < night, "night", "day"),
        "lighting": rng.choice(["bright", "normal", "dim"], n, p=[0.3, 0.5, 0.2]),
        "camera": rng.choice(["cam1", "cam2", "cam3"], n),
    })


def level_of(frame: pd.DataFrame, feature: str) -> str:
    return frame.set_index("feature").loc[feature, "level"]


# --- PSI, by hand ---------------------------------------------------------------------------

def test_psi_hand_checked():
    ref = np.arange(1, 9, dtype=float)                      # median 4.5 -> two bins of 4
    cur = np.array([1, 2, 3, 4, 1, 2, 7, 8], dtype=float)  # 6 at or below 4.5, 2 above
    # shares (0.5, 0.5) -> (0.75, 0.25):
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5) = 0.25 ln 1.5 + 0.25 ln 2
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)
    assert expected == pytest.approx(0.274653, abs=1e-6)
    assert psi(ref, cur, bins=2) == pytest.approx(expected, rel=1e-12)
    # an empty current bin is floored at epsilon: (1 - .5) ln(1/.5) + (1e-4 - .5) ln(1e-4/.5)
    empty = 0.5 * math.log(2.0) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert empty == pytest.approx(4.60432, abs=1e-5)
    assert psi(ref, np.ones(8), bins=2, epsilon=1e-4) == pytest.approx(empty, rel=1e-12)
    assert psi(ref, ref, bins=4) == 0.0
    # the same shares over categories give the same index
    assert category_psi(list("aabb"), list("aaab")) == pytest.approx(expected, rel=1e-12)


def test_level_rule_needs_size_and_evidence_to_fail():
    t = DriftThresholds()
    assert psi_level(0.30, 0.001, t) == "fail"
    assert psi_level(0.30, 0.2, t) == "warn"      # large but not significant
    assert psi_level(0.12, 1e-9, t) == "warn"
    assert psi_level(0.05, 1e-9, t) == "ok"       # significant but small
    assert psi_level(float("nan"), 0.0, t) == "ok"
    with pytest.raises(ValueError, match="psi_warn"):
        DriftThresholds(psi_warn=0.3, psi_fail=0.2)


# --- input drift ----------------------------------------------------------------------------

def test_identical_distributions_are_ok():
    out = input_drift(image_table(1000, 1), image_table(1000, 2))
    assert list(out.columns) == DRIFT_COLUMNS
    assert set(out["feature"]) == {"brightness", "contrast", "sharpness", "colour_cast", "shift",
                                   "lighting", "camera"}
    assert (out["kind"] == "input").all()
    assert (out["level"] == "ok").all(), out[["feature", "psi", "p_value", "detail"]]
    assert (out["reference_n"] == 1000).all() and (out["current_n"] == 1000).all()
    assert summarise(out)["level"] == "ok"


def test_night_heavy_brightness_drop_fails():
    reference = image_table(600, 1)
    night_heavy = image_table(200, 3, brightness=0.5 * 0.7)     # mean brightness down 30%
    out = input_drift(reference, night_heavy)
    row = out.set_index("feature").loc["brightness"]
    assert row["level"] == "fail"
    assert row["psi"] >= 0.25 and row["p_value"] < 0.01 and row["statistic"] > 0.5
    assert "median 0.4999 -> 0.35" in row["detail"]
    assert level_of(out, "contrast") == "ok"


def test_categorical_mix_shift_detected():
    out = input_drift(image_table(500, 1, night=0.3), image_table(300, 4, night=0.7),
                      numeric_columns=[], categorical_columns=["shift", "camera"])
    shift = out.set_index("feature").loc["shift"]
    assert shift["level"] == "fail"
    assert "night 33% -> 70%" in shift["detail"]
    assert level_of(out, "camera") == "ok"


def test_small_batches_and_bad_input():
    out = input_drift(image_table(500, 1), image_table(10, 5, brightness=0.2))
    assert (out["level"] == "ok").all()
    assert out["detail"].str.startswith("not enough evidence").all()
    with pytest.raises(DriftInputError, match="current table has no column"):
        input_drift(image_table(50, 1), image_table(50, 2).drop(columns="shift"),
                    categorical_columns=["shift"])
    # a boolean "numeric" column is compared as a category mix
    ref = pd.DataFrame({"noise": [True] * 20 + [False] * 80})
    cur = pd.DataFrame({"noise": [True] * 80 + [False] * 20})
    out = input_drift(ref, cur, numeric_columns=["noise"], categorical_columns=[])
    assert out["level"].tolist() == ["fail"] and "chi2" in out["detail"].iloc[0]


def bursty_table(n_bursts: int, rng: np.random.Generator) -> pd.DataFrame:
    """Frames in bursts of 1-9 that share their shift and (up to noise) their brightness."""
    size = rng.integers(1, 10, n_bursts)
    night = rng.random(n_bursts) < 0.3
    level = np.where(night, 0.25, 0.55) + rng.normal(0, 0.05, n_bursts)
    return pd.DataFrame({
        "group_id": np.repeat([f"b{i}" for i in range(n_bursts)], size),
        "shift": np.repeat(np.where(night, "night", "day"), size),
        "brightness": np.repeat(level, size) + rng.normal(0, 0.01, size.sum()),
    })


def test_bursts_count_as_groups_not_frames():
    rng = np.random.default_rng(5)
    naive_fails = grouped_fails = 0
    for _ in range(30):                 # both sides drawn from the same distribution
        ref, cur = bursty_table(40, rng), bursty_table(40, rng)
        kwargs = {"numeric_columns": ["brightness"], "categorical_columns": ["shift"]}
        naive = input_drift(ref, cur, group_column=None, **kwargs)
        grouped = input_drift(ref, cur, **kwargs)
        naive_fails += int((naive["p_value"] < 0.01).any())
        grouped_fails += int((grouped["p_value"] < 0.01).any())
        assert grouped["detail"].str.contains("permuting 40\\+40 groups").all()
    assert naive_fails >= 10            # frames taken as independent: chance looks like drift
    assert grouped_fails <= 3
    # with one frame per group the permutation test agrees with the classical one
    a, b = rng.normal(size=150), rng.normal(0.2, 1, size=120)
    from scipy import stats

    from preflight.drift.input import ks_permutation_p
    p = ks_permutation_p(a, b, np.arange(150), np.arange(120), permutations=2999)
    assert p == pytest.approx(stats.ks_2samp(a, b).pvalue, abs=0.03)
    # too few groups is not enough evidence, however many frames they hold
    few = input_drift(bursty_table(12, rng), bursty_table(12, rng),
                      numeric_columns=["brightness"], categorical_columns=[])
    assert few["level"].iloc[0] == "ok"
    assert few["detail"].iloc[0].startswith("not enough evidence: 12 reference and 12 current "
                                            "groups")


# --- embedding drift ------------------------------------------------------------------------

def test_embedding_drift_same_vs_shifted_gaussian():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(24, 24))
    reference = rng.normal(size=(500, 24)) @ mixing
    same = rng.normal(size=(250, 24)) @ mixing
    shifted = (rng.normal(size=(250, 24)) + 0.8) @ mixing
    ok = embedding_drift(reference, same, n_components=8, seed=1)
    assert list(ok.columns) == DRIFT_COLUMNS
    assert ok["level"].iloc[0] == "ok" and ok["statistic"].iloc[0] < 0.65
    bad = embedding_drift(reference, shifted, n_components=8, seed=1)
    assert bad["level"].iloc[0] == "fail"
    assert bad["statistic"].iloc[0] > 0.75 and bad["p_value"].iloc[0] < 0.01
    assert bad["reference_n"].iloc[0] == 250             # the held-out half of the reference
    # seeded: the same call gives the same numbers
    again = embedding_drift(reference, shifted, n_components=8, seed=1)
    assert again["statistic"].iloc[0] == bad["statistic"].iloc[0]
    with pytest.raises(DriftInputError, match="same model"):
        embedding_drift(reference, shifted[:, :5])


def test_embed_images_batches_and_colour_histogram():
    images = [np.full((8, 6, 3), i, np.uint8) for i in range(7)]
    calls = []

    def fake_model(batch):
        calls.append(len(batch))
        return np.array([[float(b[0, 0, 0]), 1.0] for b in batch])

    out = embed_images(fake_model, images, batch_size=3)
    assert calls == [3, 3, 1]
    assert out.shape == (7, 2) and out[:, 0].tolist() == list(range(7))
    with pytest.raises(DriftInputError, match="expected"):
        embed_images(lambda batch: np.zeros((1, 2)), images, batch_size=3)

    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :, 0] = 255                       # half the red channel saturated
    img[:, :, 2] = 100                        # blue all in bin 100 * 8 // 256 = 3
    h = colour_histogram_embedding([img, np.zeros((2, 3, 3), np.uint8)], bins=8)
    assert h.shape == (2, 24)
    assert np.allclose(h.reshape(2, 3, 8).sum(axis=2), 1.0)
    assert h[0, 0] == 0.5 and h[0, 7] == 0.5 and h[0, 8] == 1.0 and h[0, 16 + 3] == 1.0


def test_colour_histogram_embedding_sees_darker_frames():
    rng = np.random.default_rng(3)

    def frames(n, level):
        return [np.clip(rng.normal(level, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
                for _ in range(n)]

    reference = colour_histogram_embedding(frames(200, 140))
    assert embedding_drift(reference, colour_histogram_embedding(frames(100, 140)),
                           n_components=5)["level"].iloc[0] == "ok"
    assert embedding_drift(reference, colour_histogram_embedding(frames(100, 95)),
                           n_components=5)["level"].iloc[0] == "fail"


# --- prediction drift -----------------------------------------------------------------------

def predictions(n_images: int, seed: int, class_p) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_images * 4
    return pd.DataFrame({"image_id": rng.integers(0, n_images, n).astype(str),
                         "class_id": rng.choice(len(class_p), n, p=class_p),
                         "score": rng.beta(4, 2, n)})


def test_prediction_drift_on_class_mix():
    names = ["person", "forklift", "pallet", "box", "sku_a", "sku_b", "sku_new"]
    base_p = [0.2, 0.1, 0.2, 0.3, 0.1, 0.1, 0.0]
    ref = predictions(150, 1, base_p)
    same = prediction_drift(ref, predictions(100, 2, base_p), class_names=names)
    assert same["feature"].tolist() == ["score", "class_mix"]
    assert (same["kind"] == "prediction").all() and (same["level"] == "ok").all()
    new_sku = prediction_drift(ref, predictions(100, 3, [0.2, 0.1, 0.1, 0.15, 0.05, 0.1, 0.3]),
                               class_names=names, operating_threshold=0.3)
    mix = new_sku.set_index("feature").loc["class_mix"]
    assert mix["level"] == "fail"
    assert "sku_new 0% -> 3" in mix["detail"] and "score >= 0.3" in mix["detail"]
    assert mix["reference_n"] == (ref["score"] >= 0.3).sum()
    assert new_sku.set_index("feature").loc["score", "level"] == "ok"
    with pytest.raises(DriftInputError, match="score"):
        prediction_drift(ref.drop(columns="score"), ref)


def test_prediction_drift_on_scores():
    ref = predictions(150, 1, [0.5, 0.5])
    unsure = predictions(100, 2, [0.5, 0.5]).assign(score=lambda d: d["score"] * 0.6)
    out = prediction_drift(ref, unsure)
    assert out.set_index("feature").loc["score", "level"] == "fail"


# --- performance drift ----------------------------------------------------------------------

def long_rows(rows) -> pd.DataFrame:
    cols = ["slice_column", "slice_value", "metric", "value", "ci_low", "ci_high", "n_images",
            "n_boxes", "thin"]
    return pd.DataFrame(rows, columns=cols)


def test_performance_drift_calls_drops_only_on_evidence():
    baseline = long_rows([
        ("__all__", "__all__", "recall", 0.80, 0.77, 0.83, 400, 2000, False),
        ("__all__", "__all__", "precision", 0.85, 0.82, 0.88, 400, 2000, False),
        ("__all__", "__all__", "AP", 0.50, np.nan, np.nan, 400, 2000, False),   # not watched
        ("shift", "night", "recall", 0.75, 0.70, 0.80, 120, 600, False),
        ("shift", "day", "recall.person", 0.90, 0.84, 0.95, 280, 300, False),
        ("lens", "dirty", "recall", 0.70, 0.50, 0.85, 12, 40, True),
        ("camera", "cam9", "recall", 0.70, 0.60, 0.80, 100, 300, False),       # baseline only
    ])
    current = long_rows([
        ("__all__", "__all__", "recall", 0.66, 0.62, 0.70, 200, 900, False),     # disjoint
        ("__all__", "__all__", "precision", 0.84, 0.80, 0.88, 200, 900, False),  # no drop
        ("__all__", "__all__", "AP", 0.20, np.nan, np.nan, 200, 900, False),
        ("shift", "night", "recall", 0.67, 0.58, 0.76, 60, 300, False),          # overlap
        ("shift", "day", "recall.person", 0.97, 0.92, 0.99, 140, 150, False),    # improved
        ("lens", "dirty", "recall", 0.30, 0.10, 0.60, 8, 15, True),              # thin
    ])
    out = performance_drift(baseline, current)
    assert list(out.columns) == PERFORMANCE_COLUMNS
    by = out.set_index("feature")
    assert set(by.index) == {"recall", "precision", "recall[shift=night]",
                             "recall.person[shift=day]", "recall[lens=dirty]"}
    assert by.loc["recall", "level"] == "fail"
    assert by.loc["recall", "statistic"] == pytest.approx(-0.14)
    assert by.loc["recall", "reference_n"] == 400 and by.loc["recall", "current_n"] == 200
    assert by.loc["recall", "baseline_ci_low"] == 0.77
    assert by.loc["recall", "current_ci_high"] == 0.70
    assert by.loc["recall[shift=night]", "level"] == "warn"
    assert "overlap" in by.loc["recall[shift=night]", "detail"]
    assert by.loc["precision", "level"] == "ok"
    assert by.loc["recall.person[shift=day]", "detail"].startswith("improved")
    thin = by.loc["recall[lens=dirty]"]
    assert thin["level"] == "ok" and bool(thin["thin"])
    assert thin["detail"].startswith("not enough evidence")
    # a bigger minimum drop turns the disjoint-interval drop into ok
    lenient = performance_drift(baseline, current, thresholds=DriftThresholds(min_drop=0.2))
    assert (lenient["level"] == "ok").all()
    # watched patterns
    only_ap = performance_drift(baseline, current, metrics=["AP"])
    assert only_ap["feature"].tolist() == ["AP"] and only_ap["level"].iloc[0] == "warn"
    assert "no intervals" in only_ap["detail"].iloc[0]
    with pytest.raises(DriftInputError, match="thin"):
        performance_drift(baseline.drop(columns="thin"), current)


# --- report ---------------------------------------------------------------------------------

def test_summarise_worst_level_and_counts():
    inputs = input_drift(image_table(600, 1), image_table(200, 3, brightness=0.35))
    preds = prediction_drift(predictions(150, 1, [0.5, 0.5]), predictions(100, 2, [0.5, 0.5]))
    s = summarise([inputs, preds])
    assert s["level"] == "fail"
    assert s["by_kind"] == {"input": "fail", "prediction": "ok"}
    assert s["counts"]["fail"] >= 1 and sum(s["counts"].values()) == s["n_features"] == 9
    assert s["counts_by_kind"]["prediction"] == {"ok": 2, "warn": 0, "fail": 0}
    assert s["flagged"][0]["level"] == "fail" and s["flagged"][0]["feature"] == "brightness"
    assert summarise([])["level"] == "ok"


def test_history_and_timeseries_chart(tmp_path):
    reference = image_table(600, 1)
    history_path = tmp_path / "drift" / "history.parquet"
    for week, brightness in zip([1, 2, 3, 4], [0.5, 0.49, 0.42, 0.33], strict=True):
        frame = input_drift(reference, image_table(200, 10 + week, brightness=brightness),
                            numeric_columns=["brightness", "contrast"], categorical_columns=[])
        rows = history_rows(frame, week, batch_column="week")
        assert rows.columns.tolist()[:4] == ["week", "kind", "feature", "value"]
        history = append_history(history_path, rows, batch_column="week")
    # re-running week 4 replaces its rows instead of duplicating them
    history = append_history(history_path, rows, batch_column="week")
    assert len(history) == 8 and len(pd.read_parquet(history_path)) == 8
    bright = history[history["feature"] == "brightness"].sort_values("week")
    assert bright["value"].is_monotonic_increasing
    assert (bright["threshold"] == 0.25).all()
    assert bright["level"].iloc[-1] == "fail" and bright["level"].iloc[0] == "ok"
    out = drift_timeseries_chart(history, tmp_path / "charts" / "drift.png")
    assert out.exists() and out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_rows_track_auc_and_performance_values():
    perf = performance_drift(
        long_rows([("__all__", "__all__", "recall", 0.8, 0.77, 0.83, 400, 2000, False)]),
        long_rows([("__all__", "__all__", "recall", 0.7, 0.66, 0.74, 200, 900, False)]))
    rng = np.random.default_rng(0)
    emb = embedding_drift(rng.normal(size=(100, 4)), rng.normal(size=(60, 4)), n_components=2)
    rows = history_rows([perf, emb], "2024-W05").set_index("feature")
    assert rows.loc["recall", "value"] == 0.7 and rows.loc["recall", "threshold"] == 0.77
    assert rows.loc["recall", "ci_low"] == 0.66
    assert rows.loc["embedding", "value"] == emb["statistic"].iloc[0]
    assert rows.loc["embedding", "threshold"] == 0.75
    assert (rows["batch"] == "2024-W05").all()


# --- the synthetic warehouse ----------------------------------------------------------------

def synth_week(tmp_path, week: int, seed: int, n: int = 200) -> pd.DataFrame:
    """A production batch of the generator: metadata, pixel properties and burst groups."""
    synth = pytest.importorskip("preflight.synth.generate")
    from preflight.data.ingest import assign_groups
    from preflight.data.properties import decode, pixel_properties

    out = tmp_path / f"week{week}_seed{seed}"
    synth.generate(out, profile="production", n=n, week=week, seed=seed, image_size=128)
    # the metadata's colour_cast is the generator's flag; the pixel property replaces it
    meta = pd.read_parquet(out / "metadata.parquet").drop(columns="colour_cast")
    props = pd.DataFrame([pixel_properties(decode((out / "images" / name).read_bytes()).image)
                          for name in meta["file_name"]])
    frames = pd.concat([meta.reset_index(drop=True), props], axis=1)
    frames["group_id"] = assign_groups(frames.assign(image_id=frames["image_id"].astype(str)),
                                       10.0)
    return frames


def test_synthetic_night_drift_is_flagged_and_week1_is_not(tmp_path):
    # ~200 frames = ~60 bursts a side: with 40 frames (~15 bursts) there is not enough evidence
    reference = synth_week(tmp_path, 1, seed=11)
    assert reference["group_id"].nunique() < len(reference)          # bursts are real
    columns = {"categorical_columns": ["shift", "lighting", "camera"]}
    same = input_drift(reference, synth_week(tmp_path, 1, seed=12), **columns)
    drifted = input_drift(reference, synth_week(tmp_path, 5, seed=13), **columns)
    assert set(same["feature"]) == {"brightness", "contrast", "sharpness", "colour_cast",
                                    "shift", "lighting", "camera"}
    assert summarise(same)["level"] != "fail", same[["feature", "psi", "p_value", "detail"]]
    assert summarise(drifted)["level"] == "fail"
    by = drifted.set_index("feature")
    assert by.loc["shift", "level"] == "fail"                        # night share 15% -> 55%
    # darker frames: significant even counted in bursts, though the 2-bin PSI may stay small
    assert by.loc["brightness", "p_value"] < 0.05
    assert same.set_index("feature").loc["brightness", "p_value"] > 0.05
    assert "permuting" in by.loc["shift", "detail"]


def test_drift_rows_fall_into_the_four_checks_and_name_their_metrics():
    from preflight.drift import DRIFT_CHECKS, check_of, drift_metrics, rows_by_check

    rows = pd.DataFrame([
        {"kind": "input", "feature": "brightness", "psi": 0.3, "statistic": 0.2,
         "level": "fail"},
        {"kind": "input", "feature": "embedding_auc", "psi": np.nan, "statistic": 0.8,
         "level": "fail"},
        {"kind": "performance", "feature": "recall.overall", "psi": np.nan, "statistic": -0.1,
         "current_value": 0.7, "level": "warn"},
    ])
    assert [check_of(k, f) for k, f in zip(rows["kind"], rows["feature"], strict=True)] == [
        "input_drift", "embedding_drift", "performance_drift"]
    split = rows_by_check(rows)
    assert list(split) == list(DRIFT_CHECKS)
    assert [len(split[c]) for c in DRIFT_CHECKS] == [1, 1, 0, 1]
    assert all(len(v) == 0 for v in rows_by_check(pd.DataFrame()).values())
    assert drift_metrics(rows) == {"drift.input.brightness": 0.3,
                                   "drift.input.embedding_auc": 0.8,
                                   "drift.performance.recall.overall": -0.1,
                                   "perf.recall.overall": 0.7}


def test_drift_thresholds_from_the_settings_section():
    from preflight.config import settings_from_dict

    drift = settings_from_dict({"drift": {"psi_fail": 0.4, "min_drop": 0.1}}).drift
    t = DriftThresholds.from_settings(drift)
    assert (t.psi_fail, t.min_drop, t.auc_fail) == (0.4, 0.1, drift.embedding_auc_fail)
