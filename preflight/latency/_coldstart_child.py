"""Entry point of the cold-start subprocess (``python -m preflight.latency._coldstart_child``).

Reads ``{"spec": ModelSpec, "frame": ndarray}`` pickled on stdin, imports and builds the model,
runs one synced prediction and prints one ``MARKER`` line of JSON timings (or an error).
"""

from __future__ import annotations

import json
import pickle
import sys
import time

from preflight.latency.coldstart import MARKER


def main() -> None:
    t_start = time.perf_counter()
    data = pickle.loads(sys.stdin.buffer.read())
    spec, frame = data["spec"], data["frame"]
    try:
        factory = spec.load_factory()
        t_import = time.perf_counter()
        predict_fn = factory(**spec.kwargs)
        t_load = time.perf_counter()
        from preflight.latency.timing import default_sync

        sync = default_sync()
        predict_fn([frame])
        sync()
        t_pred = time.perf_counter()
    except Exception as exc:  # reported to the parent, which raises LatencyError
        print(MARKER + json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        raise SystemExit(1) from exc
    print(MARKER + json.dumps({"import_s": t_import - t_start, "load_s": t_load - t_import,
                                "first_predict_s": t_pred - t_load}), flush=True)


if __name__ == "__main__":  # pragma: no cover
    main()
