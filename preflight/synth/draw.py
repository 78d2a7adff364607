"""Drawing for the synthetic warehouse (see ``preflight.synth.generate``): objects, backgrounds.

Objects are painted far-to-near into the RGB frame and an object-id map (``_render``), so each
label is the extent of the object's visible pixels; ``_background`` is a camera's fixed view.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from preflight.synth.scene import (
    BOX,
    FORKLIFT,
    PALLET,
    PERSON,
    SKU_A,
    SKU_B,
    SKU_NEW,
    Camera,
    _Obj,
)

#: Size of the printed mark on sku_a (circle diameter) / sku_b (cross span), fraction of the side.
SKU_MARK_FRACTION = 0.18


# ------------------------------------------------------------------------------- drawing
Color = tuple[int, int, int]


class _Pen:
    """Draws filled shapes into the RGB frame and, for silhouette parts, into the id map."""

    __slots__ = ("img", "idm", "val")

    def __init__(self, img: np.ndarray, idm: np.ndarray) -> None:
        self.img, self.idm, self.val = img, idm, 0

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color,
             sil: bool = True) -> None:
        a, b = int(round(x0)), int(round(y0))
        c, d = max(a, int(round(x1)) - 1), max(b, int(round(y1)) - 1)
        cv2.rectangle(self.img, (a, b), (c, d), color, -1)
        if sil:
            cv2.rectangle(self.idm, (a, b), (c, d), self.val, -1)

    def poly(self, pts: list[tuple[float, float]], color: Color, sil: bool = True) -> None:
        p = np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)
        cv2.fillConvexPoly(self.img, p, color)
        if sil:
            cv2.fillConvexPoly(self.idm, p, self.val)

    def circle(self, cx: float, cy: float, r: float, color: Color, sil: bool = True) -> None:
        c, r_ = (int(round(cx)), int(round(cy))), max(1, int(round(r)))
        # anti-aliased only inside a silhouette: an AA edge would bleed past the label
        cv2.circle(self.img, c, r_, color, -1, cv2.LINE_8 if sil else cv2.LINE_AA)
        if sil:
            cv2.circle(self.idm, c, r_, self.val, -1)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, a0: float, a1: float,
                color: Color, sil: bool = True) -> None:
        c = (int(round(cx)), int(round(cy)))
        axes = (max(1, int(round(ax))), max(1, int(round(ay))))
        cv2.ellipse(self.img, c, axes, 0, a0, a1, color, -1)
        if sil:
            cv2.ellipse(self.idm, c, axes, 0, a0, a1, self.val, -1)


VESTS: tuple[Color, ...] = ((255, 122, 24), (206, 240, 40), (250, 212, 30))
HATS: tuple[Color, ...] = ((245, 245, 240), (250, 210, 30), (40, 110, 220))
TROUSERS: tuple[Color, ...] = ((34, 40, 70), (50, 50, 54), (70, 60, 50))
SKIN: tuple[Color, ...] = ((232, 190, 160), (190, 140, 100), (130, 90, 60))
FORKLIFT_BODY: tuple[Color, ...] = ((242, 182, 24), (246, 140, 26))


def _draw_person(pen: _Pen, o: _Obj) -> None:
    x0, y0, w, h = o.x0, o.y0, o.w, o.h
    cx = x0 + w / 2
    s = o.style
    shirt = TROUSERS[(s // 7) % 3]
    # legs and shoes
    pen.rect(cx - 0.30 * w, y0 + 0.56 * h, cx - 0.03 * w, y0 + 0.96 * h, TROUSERS[s % 3])
    pen.rect(cx + 0.03 * w, y0 + 0.56 * h, cx + 0.30 * w, y0 + 0.96 * h, TROUSERS[s % 3])
    pen.rect(cx - 0.33 * w, y0 + 0.955 * h, cx - 0.02 * w, y0 + h, (20, 20, 20))
    pen.rect(cx + 0.02 * w, y0 + 0.955 * h, cx + 0.33 * w, y0 + h, (20, 20, 20))
    # arms, torso (hi-vis vest with reflective stripes)
    pen.rect(x0, y0 + 0.21 * h, x0 + 0.17 * w, y0 + 0.53 * h, shirt)
    pen.rect(x0 + 0.83 * w, y0 + 0.21 * h, x0 + w, y0 + 0.53 * h, shirt)
    pen.rect(x0 + 0.15 * w, y0 + 0.19 * h, x0 + 0.85 * w, y0 + 0.58 * h, VESTS[s % 3])
    stripe = max(1.0, 0.025 * h)
    for v in (0.40, 0.49):
        pen.rect(x0 + 0.15 * w, y0 + v * h, x0 + 0.85 * w, y0 + v * h + stripe, (205, 205, 200),
                 sil=False)
    # head and hard hat
    r = max(1.0, 0.085 * h)
    hy = y0 + 0.035 * h + r
    pen.rect(cx - 0.3 * r, hy + 0.7 * r, cx + 0.3 * r, y0 + 0.2 * h, SKIN[(s // 3) % 3])
    pen.circle(cx, hy, r, SKIN[(s // 3) % 3])
    pen.ellipse(cx, hy - 0.25 * r, 1.15 * r, 0.95 * r, 180, 360, HATS[(s // 9) % 3])


def _mapper(o: _Obj) -> Callable[[float], float]:
    if o.flip:
        return lambda u: o.x0 + (1.0 - u) * o.w
    return lambda u: o.x0 + u * o.w


def _rect_uv(pen: _Pen, o: _Obj, U: Callable[[float], float], u0: float, v0: float, u1: float,
             v1: float, color: Color, sil: bool = True) -> None:
    a, b = U(u0), U(u1)
    pen.rect(min(a, b), o.y0 + v0 * o.h, max(a, b), o.y0 + v1 * o.h, color, sil)


def _draw_forklift(pen: _Pen, o: _Obj) -> None:
    U, y0, h = _mapper(o), o.y0, o.h
    body = FORKLIFT_BODY[o.style % 2]
    dark_body = tuple(int(c * 0.7) for c in body)
    steel, black = (58, 58, 62), (22, 22, 22)
    _rect_uv(pen, o, U, 0.00, 0.45, 0.70, 0.82, body)            # chassis
    _rect_uv(pen, o, U, 0.00, 0.38, 0.24, 0.47, dark_body)       # counterweight
    _rect_uv(pen, o, U, 0.05, 0.10, 0.10, 0.46, steel)           # rear post
    _rect_uv(pen, o, U, 0.56, 0.10, 0.61, 0.46, steel)           # front post
    _rect_uv(pen, o, U, 0.02, 0.06, 0.66, 0.12, steel)           # overhead guard
    _rect_uv(pen, o, U, 0.20, 0.30, 0.34, 0.46, black)           # seat
    _rect_uv(pen, o, U, 0.71, 0.00, 0.75, 0.90, steel)           # mast rails
    _rect_uv(pen, o, U, 0.78, 0.00, 0.82, 0.90, steel)
    _rect_uv(pen, o, U, 0.71, 0.04, 0.82, 0.08, steel)
    _rect_uv(pen, o, U, 0.71, 0.46, 0.82, 0.50, steel)
    _rect_uv(pen, o, U, 0.82, 0.58, 0.86, 0.93, (80, 80, 84))    # carriage
    _rect_uv(pen, o, U, 0.82, 0.89, 1.00, 0.93, (120, 120, 124))  # fork
    _rect_uv(pen, o, U, 0.02, 0.60, 0.68, 0.64, (30, 30, 30), sil=False)  # hazard stripe
    for u, r in ((0.20, 0.15), (0.57, 0.13)):
        cy = y0 + (0.97 - r) * h
        pen.circle(U(u), cy, r * h, black)
        pen.circle(U(u), cy, 0.45 * r * h, (150, 150, 150), sil=False)
    pen.circle(U(0.33), y0 + 0.045 * h, 0.035 * h, (255, 120, 20))  # beacon


def _draw_pallet(pen: _Pen, o: _Obj) -> None:
    U, y0, h = _mapper(o), o.y0, o.h
    k = o.style % 3
    wood = ((198, 152, 94), (186, 140, 86), (206, 166, 110))[k]
    dark = tuple(int(c * 0.75) for c in wood)
    _rect_uv(pen, o, U, 0, 0, 1, 0.45, wood)
    gap = max(1.0, 0.03 * h)
    for v in (0.11, 0.22, 0.33):
        pen.rect(o.x0, y0 + v * h, o.x0 + o.w, y0 + v * h + gap, dark, sil=False)
    _rect_uv(pen, o, U, 0, 0.45, 1, 0.82, (52, 40, 28))  # fork openings in shadow
    for u0 in (0.0, 0.43, 0.86):
        _rect_uv(pen, o, U, u0, 0.45, u0 + 0.14, 0.82, dark)
    _rect_uv(pen, o, U, 0, 0.82, 1, 1.0, wood)


BOX_COLOURS = {False: ((182, 136, 82), (212, 172, 114), (148, 108, 64), (226, 204, 152)),
               True: ((226, 224, 214), (242, 240, 232), (192, 190, 182), (200, 56, 46))}
SKU_COLOURS = {False: ((38, 88, 196), (94, 142, 228), (26, 60, 148)),
               True: ((120, 70, 178), (158, 112, 212), (84, 48, 130))}


def _cuboid(pen: _Pen, o: _Obj, front: Color, top: Color, side: Color, skew: float,
            top_h: float) -> tuple[float, float, float, float]:
    """A box seen from slightly above: front face, top face and one side face.
    Returns the front face (x0, y0, x1, y1)."""
    U, y0, h = _mapper(o), o.y0, o.h
    yt, y1 = y0 + top_h * h, y0 + h
    fu = 1.0 - skew
    pen.poly([(U(0), yt), (U(fu), yt), (U(fu), y1), (U(0), y1)], front)
    pen.poly([(U(0), yt), (U(skew), y0), (U(1), y0), (U(fu), yt)], top)
    pen.poly([(U(fu), yt), (U(1), y0), (U(1), y1 - top_h * h), (U(fu), y1)], side)
    a, b = U(0), U(fu)
    return min(a, b), yt, max(a, b), y1


def _draw_box(pen: _Pen, o: _Obj) -> None:
    front, top, side, tape = BOX_COLOURS[o.new_pack]
    fx0, fy0, fx1, _ = _cuboid(pen, o, front, top, side, 0.18, 0.22)
    U, y0, h = _mapper(o), o.y0, o.h
    tw = 0.05 * o.w
    mid = (fx0 + fx1) / 2
    shift = (U(0.18) - U(0.0))  # the top face's skew, signed
    pen.poly([(mid - tw, fy0), (mid + tw, fy0), (mid + tw + shift, y0), (mid - tw + shift, y0)],
             tape, sil=False)
    pen.rect(mid - tw, fy0, mid + tw, y0 + 0.45 * h, tape, sil=False)


def _draw_sku(pen: _Pen, o: _Obj) -> None:
    front, top, side = SKU_COLOURS[o.new_pack]
    fx0, fy0, fx1, fy1 = _cuboid(pen, o, front, top, side, 0.15, 0.18)
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    m = max(2.0, SKU_MARK_FRACTION * o.w)
    white = (246, 246, 246)
    if o.cls == SKU_A:
        pen.circle(cx, cy, m / 2, white, sil=False)
    else:
        t = max(1.0, 0.3 * m) / 2
        pen.rect(cx - m / 2, cy - t, cx + m / 2, cy + t, white, sil=False)
        pen.rect(cx - t, cy - m / 2, cx + t, cy + m / 2, white, sil=False)


def _draw_sku_new(pen: _Pen, o: _Obj) -> None:
    x0, y0, w, h = o.x0, o.y0, o.w, o.h
    cx = x0 + w / 2
    body, lid, band = (46, 150, 84), (98, 202, 128), (234, 206, 44)
    pen.rect(x0, y0 + 0.12 * h, x0 + w, y0 + 0.90 * h, body)
    pen.ellipse(cx, y0 + 0.90 * h, w / 2, 0.10 * h, 0, 180, body)
    pen.rect(x0, y0 + 0.45 * h, x0 + w, y0 + 0.62 * h, band, sil=False)
    pen.ellipse(cx, y0 + 0.12 * h, w / 2, 0.12 * h, 0, 360, lid)


DRAW: dict[int, Callable[[_Pen, _Obj], None]] = {
    PERSON: _draw_person, FORKLIFT: _draw_forklift, PALLET: _draw_pallet, BOX: _draw_box,
    SKU_A: _draw_sku, SKU_B: _draw_sku, SKU_NEW: _draw_sku_new,
}


def _draw_column(img: np.ndarray, idm: np.ndarray, x0: float, pw: float, val: int) -> None:
    """A foreground rack column (steel upright with a yellow/black guard), full frame height."""
    S = img.shape[0]
    a, b = int(round(x0)), max(int(round(x0)), int(round(x0 + pw)) - 1)
    cv2.rectangle(img, (a, 0), (b, S - 1), (92, 98, 108), -1)
    cv2.rectangle(img, (a, 0), (a + max(1, (b - a) // 4), S - 1), (130, 136, 146), -1)
    band = max(2, S // 40)
    for i, y in enumerate(range(S - 5 * band, S, band)):
        cv2.rectangle(img, (a, y), (b, y + band - 1), (240, 200, 30) if i % 2 else (25, 25, 25), -1)
    cv2.rectangle(idm, (a, 0), (b, S - 1), val, -1)


# --------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng: np.random.Generator, S: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (S, S), interpolation=cv2.INTER_CUBIC)


def _background(cam: Camera, S: int, horizon: float) -> np.ndarray:
    """The fixed view of a camera (same in every run): wall with racking, concrete floor."""
    rng = np.random.default_rng([cam.layout_seed, 7])
    yh = int(round(horizon * S))
    img = np.empty((S, S, 3), np.float32)
    ramp = np.linspace(0.92, 1.04, max(yh, 1), dtype=np.float32)[:, None, None]
    img[:yh] = np.asarray(cam.wall_rgb, np.float32) * ramp
    depth = np.linspace(0.0, 1.0, S - yh, dtype=np.float32)[:, None, None]
    img[yh:] = np.asarray(cam.floor_rgb, np.float32) * (0.88 + 0.14 * depth)
    # concrete texture: mottling and grain (floor), fainter on the wall
    tex = 9.0 * _smooth_noise(rng, S, 10) + 4.0 * _smooth_noise(rng, S, max(4, S // 6))
    tex += 2.5 * rng.standard_normal((S, S)).astype(np.float32)
    img[yh:] += tex[yh:, :, None]
    img[:yh] += 0.3 * tex[:yh, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    if yh > 8:
        _racking(img, rng, S, yh)
    _floor_markings(img, rng, cam, S, yh)
    return img


def _racking(img: np.ndarray, rng: np.random.Generator, S: int, yh: int) -> None:
    """Racking along the back wall, in place: blue uprights, orange beams, wrapped loads and bins."""
    bay = S * rng.uniform(0.17, 0.24)
    levels = max(2, int(yh / (0.1 * S)))
    lev_h = (yh - 2) / levels
    x = -rng.uniform(0, bay)
    post = max(1, int(0.012 * S))
    beam = max(1, int(0.01 * S))
    loads = ((222, 224, 226), (206, 208, 212), (60, 62, 66), (46, 86, 60), (170, 40, 36))
    while x < S:
        for lv in range(levels):
            yb = yh - 1 - lv * lev_h
            lx = x + post
            while lx < x + bay - post:
                lw = min(bay * rng.uniform(0.25, 0.45), x + bay - post - lx)
                if rng.random() < 0.8 and lw > 2:
                    lh = lev_h * rng.uniform(0.45, 0.85)
                    col = loads[int(rng.choice(5, p=[0.35, 0.25, 0.2, 0.12, 0.08]))]
                    cv2.rectangle(img, (int(lx), int(yb - lh)), (int(lx + lw) - 1, int(yb)),
                                  col, -1)
                    cv2.line(img, (int(lx), int(yb - lh / 2)), (int(lx + lw) - 1,
                             int(yb - lh / 2)), tuple(int(c * 0.8) for c in col), 1)
                lx += lw + bay * 0.04
            cv2.rectangle(img, (int(x), int(yb - beam)), (int(x + bay), int(yb)),
                          (232, 112, 34), -1)
        cv2.rectangle(img, (int(x), 0), (int(x) + post, yh), (40, 72, 150), -1)
        x += bay
    cv2.rectangle(img, (0, yh - max(1, S // 80)), (S, yh), (70, 70, 72), -1)  # skirting


def _floor_markings(img: np.ndarray, rng: np.random.Generator, cam: Camera, S: int,
                    yh: int) -> None:
    """Floor markings, in place: yellow lanes converging to a vanishing point, expansion joints."""
    vx = S * rng.uniform(0.35, 0.65)
    vy = yh - S * 0.6
    for xb in (S * rng.uniform(-0.1, 0.15), S * rng.uniform(0.85, 1.1)):
        t_b = 0.012 * S
        t_h = t_b * (yh - vy) / (S - vy)
        xh = vx + (xb - vx) * (yh - vy) / (S - vy)
        pts = np.array([(xb - t_b, S), (xb + t_b, S), (xh + t_h, yh), (xh - t_h, yh)])
        cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), (214, 184, 40))
    for k in range(1, 5):
        y = int(yh + (S - yh) * (k / 5) ** 1.6)
        cv2.line(img, (0, y), (S, y), tuple(int(c * 0.78) for c in cam.floor_rgb), 1)



def _render(bg: np.ndarray, objs: list[_Obj], column: tuple[float, float] | None
            ) -> tuple[np.ndarray, list[tuple[int, int, int, int, int, bool, float]]]:
    """Paint far-to-near; boxes ``(class, x0, y0, x1, y1, truncated, occluded)`` of the
    visible pixels, in painting order."""
    S = bg.shape[0]
    img = bg.copy()
    idm = np.zeros((S, S), np.uint8)
    pen = _Pen(img, idm)
    order = sorted(range(len(objs)), key=lambda i: (objs[i].base, i))
    crops, full = [], []
    for rank, i in enumerate(order):
        o = objs[i]
        pen.val = rank + 1
        # contact shadow below the base line (never over farther objects)
        cx, cy = o.x0 + o.w / 2, o.base
        cv2.ellipse(img, (int(round(cx)), int(round(cy))),
                    (max(1, int(0.55 * o.w)), max(1, int(0.04 * o.h + 0.01 * S))), 0, 0, 180,
                    (88, 88, 86), -1)
        DRAW[o.cls](pen, o)
        a, b = max(0, math.floor(o.x0) - 2), max(0, math.floor(o.y0) - 2)
        c, d = min(S, math.ceil(o.x0 + o.w) + 2), min(S, math.ceil(o.base) + 2)
        crops.append((a, b, c, d))
        full.append(int(np.count_nonzero(idm[b:d, a:c] == pen.val)) if c > a and d > b else 0)
    if column is not None:
        _draw_column(img, idm, column[0], column[1], 255)
    boxes = []
    for rank, i in enumerate(order):
        o = objs[i]
        a, b, c, d = crops[rank]
        if full[rank] == 0:
            continue
        mask = idm[b:d, a:c] == rank + 1
        vis = int(np.count_nonzero(mask))
        if vis < 4:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        x0, x1 = a + int(cols[0]), a + int(cols[-1]) + 1
        y0, y1 = b + int(rows[0]), b + int(rows[-1]) + 1
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        truncated = bool(o.x0 < -0.5 or o.y0 < -0.5 or o.x0 + o.w > S + 0.5 or o.base > S + 0.5)
        occluded = round(max(0.0, 1.0 - vis / full[rank]), 4)
        boxes.append((o.cls, x0, y0, x1, y1, truncated, occluded))
    return img, boxes
