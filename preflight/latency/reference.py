"""Reference model factories for latency measurements and tests (real compute, no weights).

* ``preflight.latency.reference:tiny_convnet`` -- a small single-stage detector head in torch:
  resize + normalise (pre-processing), three convolutions, grid decoding and class-aware greedy
  NMS (post-processing). Weights are random (seeded); the point is realistic *work*, not accuracy.
* ``preflight.latency.reference:blob_detector`` -- numpy/OpenCV only: blur, threshold, connected
  components. Cheap to import, for fast checks.

Both return ``predict_fn(list[np.ndarray RGB uint8]) -> list[np.ndarray (N, 6)]`` with rows
``class_id, score, x, y, w, h`` in the input frame's pixels (top-left xywh), as in CONTRACTS.md.
"""

from __future__ import annotations

import cv2
import numpy as np


def nms_xywh(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression on ``xywh`` boxes; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def tiny_convnet(input_size: int = 64, channels: int = 16, num_classes: int = 7,
                 score_threshold: float = 0.05, iou_threshold: float = 0.5, max_det: int = 100,
                 threads: int | None = None, device: str = "cpu", seed: int = 0):
    """A tiny torch detector: ``input_size`` square input, stride-4 grid, ``num_classes`` classes.

    ``threads`` calls ``torch.set_num_threads`` (process-wide) when given. torch is imported
    inside the factory, so a cold start charges its import to ``load_s``, not ``import_s``.
    """
    import torch
    from torch import nn

    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, 5 + num_classes, 1),
    ).to(device).eval()
    stride = 4
    grid = input_size // stride
    gy, gx = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    offsets = (np.stack([gx.ravel(), gy.ravel()], axis=1)).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255

    def predict(frames: list[np.ndarray]) -> list[np.ndarray]:
        if not frames:
            return []
        batch = np.stack([
            (cv2.resize(f, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
             .astype(np.float32) - mean) / std for f in frames
        ]).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            out = net(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
            out = out.flatten(2).transpose(1, 2).float().cpu().numpy()  # (B, grid*grid, 5+K)
        results = []
        for f, o in zip(frames, out, strict=True):
            h, w = f.shape[:2]
            sig = 1.0 / (1.0 + np.exp(-o))
            cls = sig[:, 5:].argmax(axis=1)
            score = sig[:, 4] * sig[np.arange(len(o)), 5 + cls]
            centre = (offsets + sig[:, :2]) * stride
            size = np.exp(np.clip(o[:, 2:4], -4, 4)) * stride * 2
            xywh = np.concatenate([centre - size / 2, size], axis=1)
            xywh *= np.array([w, h, w, h], dtype=np.float32) / input_size
            sel = score >= score_threshold
            xywh, score, cls = xywh[sel], score[sel], cls[sel]
            shifted = xywh.copy()
            shifted[:, :2] += cls[:, None] * (max(w, h) + 1)  # class-aware NMS in one pass
            keep = nms_xywh(shifted, score, iou_threshold)[:max_det]
            results.append(np.column_stack([cls[keep], score[keep], xywh[keep]]).astype(np.float64))
        return results

    return predict


def blob_detector(threshold: int = 128, min_area: int = 4, blur: int = 5):
    """Connected components of bright (blurred, thresholded) pixels, one class, score = mean/255."""

    def predict(frames: list[np.ndarray]) -> list[np.ndarray]:
        results = []
        for f in frames:
            grey = cv2.blur(np.ascontiguousarray(f.max(axis=2)), (blur, blur))
            binary = (grey >= threshold).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
            rows = []
            for k in range(1, n):
                x, y, w, h, area = stats[k]
                if area >= min_area:
                    rows.append([0, float(grey[labels == k].mean()) / 255.0, x, y, w, h])
            results.append(np.asarray(rows, dtype=np.float64).reshape(-1, 6))
        return results

    return predict
