"""Scene and metadata sampling for the synthetic warehouse (see ``preflight.synth.generate``).

The world's settings (taxonomy ids, object sizes, the fixed cameras, the benchmark profile and
the production edge-case rates), the objects of a burst (``_World``: placement, deliberate
occlusion, truncation, movement within a burst) and every frame's conditions (``_plan``:
camera, week, shift, lighting, burst, capture time and which effects apply).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import numpy as np

from preflight.taxonomy import Taxonomy

#: The embedded world's classes, in taxonomy order (config/preflight.yaml lists the same).
#: ``sku_a``/``sku_b`` differ only by a small printed mark (the look-alike pair); ``sku_new``
#: appears only in later production weeks and never in the benchmark profile (no analog).
CLASS_NAMES: tuple[str, ...] = ("person", "forklift", "pallet", "box", "sku_a", "sku_b", "sku_new")
#: The generator's taxonomy (what its data.yaml / annotations.json name).
SYNTH_TAXONOMY = Taxonomy(CLASS_NAMES)
PERSON, FORKLIFT, PALLET, BOX, SKU_A, SKU_B, SKU_NEW = range(len(CLASS_NAMES))
N_CLASSES = len(CLASS_NAMES)
#: Monday 00:00 of week 1; week N starts 7 * (N - 1) days later.
WEEK1_START = datetime(2024, 3, 4)
LIGHTING_VALUES: tuple[str, ...] = ("bright", "normal", "dim")


#: Object (width, height) as fractions of the image side at perspective scale 1.
BASE_SIZE: dict[int, tuple[float, float]] = {
    PERSON: (0.15, 0.40),
    FORKLIFT: (0.34, 0.31),
    PALLET: (0.28, 0.10),
    BOX: (0.14, 0.125),
    SKU_A: (0.095, 0.09),
    SKU_B: (0.095, 0.09),
    SKU_NEW: (0.085, 0.10),
}


# --------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Camera:
    """A fixed camera: its site, where the floor meets the back wall, and its perspective scale
    (object scale at the far edge of the floor and at the bottom of the frame)."""

    name: str
    site: str
    horizon: float
    scale_far: float
    scale_near: float
    layout_seed: int
    floor_rgb: tuple[int, int, int]
    wall_rgb: tuple[int, int, int]


CAMERAS: tuple[Camera, ...] = (
    Camera("cam1", "site_a", 0.34, 0.60, 1.30, 11, (148, 146, 140), (178, 182, 186)),
    Camera("cam2", "site_a", 0.30, 0.55, 1.25, 23, (138, 139, 137), (170, 176, 184)),
    Camera("cam3", "site_b", 0.38, 0.62, 1.35, 37, (158, 151, 138), (186, 180, 170)),
    # high-mounted: sees more floor, everything is far away (the small-object camera)
    Camera("cam4", "site_b", 0.16, 0.22, 0.60, 41, (150, 148, 142), (180, 180, 176)),
)
CAMERA_BY_NAME: dict[str, Camera] = {c.name: c for c in CAMERAS}


@dataclass(frozen=True)
class BenchmarkSettings:
    """The clean benchmark profile: canonical framing, no edge cases."""

    cameras: tuple[str, ...] = ("cam1", "cam2", "cam3")
    #: perspective scale range of every benchmark camera (close framing: sku >= ~32 px at 320)
    scale: tuple[float, float] = (1.05, 1.40)
    horizon: float = 0.30
    lighting: tuple[float, float] = (0.45, 0.55)  # bright, normal
    jpeg_quality: int = 95
    objects_per_frame: tuple[int, int] = (2, 6)
    class_weights: tuple[float, ...] = (0.18, 0.10, 0.16, 0.20, 0.18, 0.18, 0.0)


@dataclass(frozen=True)
class ProductionRates:
    """The production profile's edge-case rates (probabilities, per frame unless stated).

    Per *burst* (a camera's few frames seconds apart share them): ``shift``, ``lighting``,
    ``colour_cast``, ``dirty_lens`` and the scene, so ``occlusion`` (one deliberate occlusion
    in the scene) and ``truncation`` (per object of the scene). Per frame: ``noise``,
    ``low_jpeg``, ``motion_blur`` and ``flicker``. Objects also overlap by chance as people and
    forklifts move during a burst; ``occluded`` in the labels is always the measured value.
    """

    # (1) distribution shift
    colour_cast: float = 0.15
    noise_day: float = 0.15
    noise_night: float = 0.90
    noise_sigma_day: tuple[float, float] = (3.0, 7.0)
    noise_sigma_night: tuple[float, float] = (8.0, 15.0)
    low_jpeg: float = 0.20
    low_jpeg_quality: tuple[int, int] = (20, 45)
    normal_jpeg_quality: tuple[int, int] = (75, 92)
    # (2) occlusion and truncation
    occlusion: float = 0.35  # scenes with one deliberate occlusion (behind an object or rack)
    rack_occlusion_share: float = 0.40  # of those, the occluder is a foreground rack column
    truncation: float = 0.12  # per object: placed across a frame border, box clipped
    # (3) look-alikes: object class weights in taxonomy order (sku_a + sku_b = half the objects)
    class_weights: tuple[float, ...] = (0.14, 0.07, 0.12, 0.17, 0.25, 0.25, 0.0)
    # (4) adversarial conditions
    motion_blur: float = 0.12
    dirty_lens: float = 0.10
    flicker: float = 0.08
    # (5) drift, week by week
    night_share_week1: float = 0.15
    night_share_step: float = 0.10
    night_share_max: float = 0.55
    night_dim: float = 0.85  # night frames that are dim (the rest: normal)
    day_lighting: tuple[float, float, float] = (0.35, 0.55, 0.10)  # bright, normal, dim
    sku_new_from_week: int = 3
    sku_new_weight: float = 0.12
    new_packaging_from_week: int = 2
    new_packaging_step: float = 0.25  # share of box/sku in new colours: step * (week - from + 1)
    new_packaging_max: float = 0.75
    # scene
    camera_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # CAMERAS order; cam4 = small
    objects_per_frame: tuple[int, int] = (2, 8)
    burst_frames: tuple[int, int] = (1, 5)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not 0.0 <= v <= 1.0:
                raise ValueError(f"ProductionRates.{f.name} must be in [0, 1], got {v}")

    def night_share(self, week: int) -> float:
        return min(self.night_share_max, self.night_share_week1 + self.night_share_step * (week - 1))

    def new_packaging_share(self, week: int) -> float:
        k = week - self.new_packaging_from_week + 1
        return 0.0 if k <= 0 else min(self.new_packaging_max, self.new_packaging_step * k)

    def weights(self, week: int) -> np.ndarray:
        w = np.array(self.class_weights, dtype=float)
        if week >= self.sku_new_from_week:
            w[SKU_NEW] = self.sku_new_weight
        return w / w.sum()


PRODUCTION_RATES = ProductionRates()
BENCHMARK = BenchmarkSettings()


# --------------------------------------------------------------------------------- objects
@dataclass
class _Obj:
    cls: int
    x0: float
    y0: float
    w: float
    h: float
    flip: bool
    style: int
    new_pack: bool
    speed: float  # per-frame movement sigma within a burst, px
    keep_inside: bool

    @property
    def base(self) -> float:
        return self.y0 + self.h


# ---------------------------------------------------------------------------------- scenes
@dataclass
class _Cond:
    week: int
    camera: Camera
    shift: str
    lighting: str
    colour_cast: bool
    lens: str
    burst: int
    captured_at: datetime
    blur: str = "none"
    flicker: bool = False
    noise: bool = False
    jpeg_quality: int = 95


def _overlap(a: _Obj, b: _Obj) -> float:
    """Intersection over the smaller box."""
    iw = min(a.x0 + a.w, b.x0 + b.w) - max(a.x0, b.x0)
    ih = min(a.base, b.base) - max(a.y0, b.y0)
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min(a.w * a.h, b.w * b.h)


class _World:
    """Scene sampling for one profile at one image size."""

    def __init__(self, profile: str, S: int, rates: ProductionRates) -> None:
        self.profile, self.S, self.rates = profile, S, rates
        self.bench = profile == "benchmark"

    def scales(self, cam: Camera) -> tuple[float, float, float]:
        if self.bench:
            return BENCHMARK.horizon, *BENCHMARK.scale
        return cam.horizon, cam.scale_far, cam.scale_near

    def _scale_at(self, cam: Camera, base: float) -> float:
        hz, s_far, s_near = self.scales(cam)
        t = (base - hz * self.S) / (self.S * (1 - hz))
        return s_far + (s_near - s_far) * min(1.0, max(0.0, t))

    def _new(self, rng: np.random.Generator, cls: int, cam: Camera, base: float, week: int,
             truncate: bool) -> _Obj:
        S = self.S
        s = self._scale_at(cam, base) * rng.uniform(0.9, 1.1)
        bw, bh = BASE_SIZE[cls]
        w, h = bw * s * S, bh * s * S
        speed = {PERSON: 0.03, FORKLIFT: 0.05}.get(cls, 0.004) * S
        new_pack = (cls in (BOX, SKU_A, SKU_B) and not self.bench
                    and rng.random() < self.rates.new_packaging_share(week))
        return _Obj(cls, 0.0, base - h, w, h, bool(rng.random() < 0.5), int(rng.integers(1000)),
                    bool(new_pack), 0.0 if self.bench else speed, not truncate)

    def place(self, rng: np.random.Generator, cls: int, cam: Camera, week: int,
              objs: list[_Obj]) -> _Obj | None:
        S = self.S
        hz = self.scales(cam)[0]
        max_overlap = 0.0 if self.bench else 0.05
        truncate = not self.bench and rng.random() < self.rates.truncation
        for _ in range(30):
            base = rng.uniform(hz * S + 0.03 * S, S - 1)
            o = self._new(rng, cls, cam, base, week, truncate)
            if truncate:
                frac = rng.uniform(0.25, 0.6)
                side = rng.choice(3, p=[0.4, 0.4, 0.2])
                if side == 0:
                    o.x0 = -frac * o.w
                elif side == 1:
                    o.x0 = S - (1 - frac) * o.w
                else:
                    o.x0 = rng.uniform(0, max(1.0, S - o.w))
                    o.y0 = S - (1 - frac) * o.h
            else:
                if o.w > S - 2 or o.h > S - 2:
                    continue
                o.x0 = rng.uniform(1, S - 1 - o.w)
                o.y0 = min(max(o.y0, 1.0), S - 1 - o.h)
            if all(_overlap(o, p) <= max_overlap for p in objs):
                return o
        return None

    def place_front(self, rng: np.random.Generator, target: _Obj, cam: Camera, week: int,
                    objs: list[_Obj], weights: np.ndarray) -> _Obj | None:
        """An object in front of ``target`` hiding 15-75% of its box."""
        S = self.S
        lo, hi = target.base + 0.02 * S, min(S - 1.0, target.base + 0.35 * S)
        if hi <= lo:
            return None
        for _ in range(30):
            cls = int(rng.choice(N_CLASSES, p=weights))
            o = self._new(rng, cls, cam, rng.uniform(lo, hi), week, False)
            if o.y0 >= target.base or o.w > S - 2 or o.y0 < 1:
                continue
            f = rng.uniform(0.3, 0.7)
            if rng.random() < 0.5:
                o.x0 = target.x0 + target.w * (1 - f)
            else:
                o.x0 = target.x0 + target.w * f - o.w
            o.x0 = min(max(o.x0, 1.0), S - 1 - o.w)
            hidden = _overlap(o, target) * min(o.w * o.h, target.w * target.h) / (
                target.w * target.h)
            if not 0.15 <= hidden <= 0.75:
                continue
            if all(_overlap(o, p) <= 0.05 for p in objs if p is not target):
                return o
        return None

    def scene(self, rng: np.random.Generator, cam: Camera, week: int
              ) -> tuple[list[_Obj], tuple[float, float] | None]:
        """Objects of one burst and an optional foreground column ``(x0, width)``."""
        if self.bench:
            weights = np.asarray(BENCHMARK.class_weights, float)
            weights = weights / weights.sum()
            lo, hi = BENCHMARK.objects_per_frame
        else:
            weights = self.rates.weights(week)
            lo, hi = self.rates.objects_per_frame
        limits = {PERSON: 3, FORKLIFT: 1}
        counts = dict.fromkeys(range(N_CLASSES), 0)
        objs: list[_Obj] = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            w = weights.copy()
            for c, lim in limits.items():
                if counts[c] >= lim:
                    w[c] = 0.0
            cls = int(rng.choice(N_CLASSES, p=w / w.sum()))
            o = self.place(rng, cls, cam, week, objs)
            if o is not None:
                objs.append(o)
                counts[cls] += 1
        column = None
        if not self.bench and objs and rng.random() < self.rates.occlusion:
            inside = [o for o in objs if o.keep_inside] or objs
            target = inside[int(rng.integers(len(inside)))]
            front = None
            if rng.random() >= self.rates.rack_occlusion_share:
                front = self.place_front(rng, target, cam, week, objs, weights)
            if front is not None:
                objs.append(front)
            else:
                pw = self.S * rng.uniform(0.04, 0.07)
                cover = min(pw, rng.uniform(0.25, 0.5) * target.w)
                x0 = (target.x0 + target.w - cover) if rng.random() < 0.5 else (
                    target.x0 + cover - pw)
                column = (x0, pw)
        if not objs:  # never an empty frame: a box in the middle of the floor
            o = self.place(rng, BOX, cam, week, [])
            if o is not None:
                objs.append(o)
        return objs, column


def _moved(objs: list[_Obj], rng: np.random.Generator, S: int, first: bool) -> list[_Obj]:
    """The burst's objects a few seconds later (people and forklifts move, the rest jitter)."""
    out = []
    for o in objs:
        p = _Obj(**o.__dict__)
        if not first and o.speed > 0:
            p.x0 += rng.normal(0.0, o.speed)
            p.y0 += rng.normal(0.0, o.speed / 4)
        if p.keep_inside:
            p.x0 = min(max(p.x0, 1.0), S - 1 - p.w)
            p.y0 = min(max(p.y0, 1.0), S - 1 - p.h)
        out.append(p)
    return out



# ----------------------------------------------------------------------------------- plan
_PROFILE_CODE = {"production": 1, "benchmark": 2}


def _plan(profile: str, n: int, week_list: list[int], seed: int, week_key: int,
          rates: ProductionRates) -> list[_Cond]:
    """Every frame's conditions, in generation order (bursts of one camera)."""
    rng = np.random.default_rng([seed, _PROFILE_CODE[profile], week_key, 0xB0])
    bench = profile == "benchmark"
    counts = [week_list.count(w) for w in sorted(set(week_list))]
    conds: list[_Cond] = []
    burst = 0
    cam_names = BENCHMARK.cameras if bench else tuple(c.name for c in CAMERAS)
    cam_p = (np.full(len(cam_names), 1 / len(cam_names)) if bench
             else np.asarray(rates.camera_weights, float) / sum(rates.camera_weights))
    for week, count in zip(sorted(set(week_list)), counts, strict=True):
        left = count
        while left > 0:
            burst += 1
            cam = CAMERA_BY_NAME[cam_names[int(rng.choice(len(cam_names), p=cam_p))]]
            length, shift, lighting, cast, lens = _burst_conditions(rng, week, left, bench, rates)
            t = _burst_start(rng, week, shift)
            for _ in range(length):
                c = _Cond(week, cam, shift, lighting, cast, lens, burst, t)
                _frame_conditions(c, rng, bench, rates)
                conds.append(c)
                t += timedelta(seconds=int(rng.integers(3, 41)))
            left -= length
    return conds


def _burst_conditions(rng: np.random.Generator, week: int, left: int, bench: bool,
                      rates: ProductionRates) -> tuple[int, str, str, bool, str]:
    """A burst's length (at most ``left`` frames), shift, lighting, colour cast and lens."""
    if bench:
        lighting = "bright" if rng.random() < BENCHMARK.lighting[0] else "normal"
        return 1, "day", lighting, False, "clean"
    length = min(left, int(rng.integers(rates.burst_frames[0], rates.burst_frames[1] + 1)))
    shift = "night" if rng.random() < rates.night_share(week) else "day"
    if shift == "night":
        lighting = "dim" if rng.random() < rates.night_dim else "normal"
    else:
        lighting = LIGHTING_VALUES[int(rng.choice(3, p=rates.day_lighting))]
    cast = bool(rng.random() < rates.colour_cast)
    lens = "dirty" if rng.random() < rates.dirty_lens else "clean"
    return length, shift, lighting, cast, lens


def _burst_start(rng: np.random.Generator, week: int, shift: str) -> datetime:
    """When a burst starts: a day of ``week`` and a time within ``shift``."""
    day = int(rng.integers(7))
    span = rng.uniform(0, 12 * 3600)
    if shift == "day":
        offset = 6 * 3600 + span
    else:
        offset = 18 * 3600 + span if span < 6 * 3600 else span - 6 * 3600
    return WEEK1_START + timedelta(days=7 * (week - 1) + day,
                                   seconds=int(min(offset, 86399 - 5 * 60)))


def _frame_conditions(c: _Cond, rng: np.random.Generator, bench: bool,
                      rates: ProductionRates) -> None:
    """Set one frame's own conditions in place: motion blur, flicker, noise, JPEG quality."""
    if bench:
        c.jpeg_quality = BENCHMARK.jpeg_quality
        return
    c.blur = "motion" if rng.random() < rates.motion_blur else "none"
    c.flicker = bool(rng.random() < rates.flicker)
    c.noise = bool(rng.random() < (rates.noise_night if c.shift == "night" else rates.noise_day))
    q = rates.low_jpeg_quality if rng.random() < rates.low_jpeg else rates.normal_jpeg_quality
    c.jpeg_quality = int(rng.integers(q[0], q[1] + 1))
