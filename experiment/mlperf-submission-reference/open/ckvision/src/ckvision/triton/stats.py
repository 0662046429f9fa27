"""Triton's inference statistics -> the per-request latency breakdown of one run.

Triton keeps cumulative ``{count, ns}`` per phase for each model; a run's breakdown is
the difference of two snapshots (after warm-up, after the test), summed over servers,
divided by the requests. What the client measured beyond the server's own time is the
client-side remainder: serialisation, network, our harness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PHASES", "snapshot", "breakdown"]

PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def snapshot(statistics: Mapping[str, Any], model: str) -> dict[str, int]:
    """Flatten ``get_inference_statistics`` (HTTP dict or gRPC ``as_json``) for one model.

    gRPC's JSON writes 64-bit numbers as strings, HTTP as numbers: both become ints.
    """
    for stats in statistics.get("model_stats", []):
        if stats.get("name") != model:
            continue
        infer = stats.get("inference_stats", {})
        out = {
            "inference_count": int(stats.get("inference_count", 0)),
            "execution_count": int(stats.get("execution_count", 0)),
        }
        for phase in PHASES:
            out[f"{phase}_count"] = int(infer.get(phase, {}).get("count", 0))
            out[f"{phase}_ns"] = int(infer.get(phase, {}).get("ns", 0))
        return out
    return {}


def _sum(snapshots: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for snap in snapshots:
        for key, value in snap.items():
            total[key] = total.get(key, 0) + value
    return total


def breakdown(
    before: Iterable[Mapping[str, int]],
    after: Iterable[Mapping[str, int]],
    client_requests: int,
    client_ns: int,
) -> dict[str, Any]:
    """Per-request averages in microseconds over the run (the GPUNet seed's columns)."""
    start, end = _sum(before), _sum(after)
    diff = {key: end.get(key, 0) - start.get(key, 0) for key in end}
    requests = diff.get("success_count", 0)
    executions = diff.get("execution_count", 0)
    out: dict[str, Any] = {
        "requests": requests,
        "client_requests": client_requests,
        "inferences": diff.get("inference_count", 0),
        "executions": executions,
        "avg_server_batch": diff.get("inference_count", 0) / executions if executions else None,
    }
    if not requests:
        return out
    per = {p: diff.get(f"{p}_ns", 0) / requests / 1000.0 for p in PHASES}
    out.update(
        {
            "server_queue_us": per["queue"],
            "server_compute_input_us": per["compute_input"],
            "server_compute_infer_us": per["compute_infer"],
            "server_compute_output_us": per["compute_output"],
            "server_total_us": per["success"],
        }
    )
    if client_requests:
        client_us = client_ns / client_requests / 1000.0
        out["client_us"] = client_us
        out["client_remainder_us"] = client_us - per["success"]
    return out
