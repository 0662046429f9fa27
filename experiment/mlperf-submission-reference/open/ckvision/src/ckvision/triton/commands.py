"""``ckvision triton-repo | triton-server | triton-perf``: what the CK entries call.

``triton-repo`` writes a model repository from an installed model (the package);
``triton-server`` runs a server on one until Ctrl-C (the scale-out path: start one per
machine, give the program their URLs); ``triton-perf`` runs perf_analyzer against URLs or
a server it starts, and records the rows as a CK experiment entry.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError, MissingPackageError, ModelError

__all__ = ["add_commands", "dispatch"]

_MODEL_TAGS = "model,onnx,efficientnet-lite0,fp32"


def add_commands(sub: Any) -> None:
    repo = sub.add_parser("triton-repo", help="write a Triton model repository for a model")
    repo.add_argument("--model", type=Path, required=True, help="model.onnx or model.plan")
    repo.add_argument("--install-dir", type=Path, required=True)
    repo.add_argument("--backend", default="python", help="python | onnxruntime | tensorrt")
    repo.add_argument("--model-name", default="classifier")
    repo.add_argument("--max-batch", type=int, default=8)
    repo.add_argument("--dynamic-batching", default="yes", choices=("yes", "no"))
    repo.add_argument("--preferred-batch", default="", help="comma list, e.g. 4,8")
    repo.add_argument("--max-queue-delay-us", type=int, default=0)
    repo.add_argument("--instances", type=int, default=1)
    repo.add_argument("--kind", default="cpu", choices=("cpu", "gpu"))
    repo.add_argument("--ort-threads", type=int, default=1)

    server = sub.add_parser("triton-server", help="run tritonserver on a repository until Ctrl-C")
    server.add_argument("--repository", type=Path, required=True)
    server.add_argument("--log-dir", type=Path, default=Path("."))
    server.add_argument("--ports", default="", help="http,grpc,metrics (default: free ports)")
    server.add_argument("--python", default="", help="the triton env's python (CK_TRITON_PYTHON)")

    perf = sub.add_parser("triton-perf", help="perf_analyzer against Triton; record the rows")
    perf.add_argument("--url", default="", help="host:port (default: start a server)")
    perf.add_argument("--repository", type=Path, help="repository to serve when no --url")
    perf.add_argument("--protocol", default="grpc", choices=("http", "grpc"))
    perf.add_argument("--model-name", default="classifier")
    perf.add_argument("--batch", type=int, default=1)
    perf.add_argument("--concurrency", default="1", help="N or start:end:step")
    perf.add_argument("--shm", default="none", choices=("none", "system"))
    perf.add_argument("--request-count", type=int, default=200)
    perf.add_argument("--stability-percent", type=int, default=10)
    perf.add_argument("--output-dir", type=Path, default=Path("."))
    perf.add_argument("--record", default="", help="experiment entry name to record into")
    perf.add_argument("--tags", default="", help="entry tags (comma), with the --record")
    perf.add_argument("--python", default="", help="the triton env's python (CK_TRITON_PYTHON)")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(":", ",").split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r} must be integers") from None


def _repo(args: argparse.Namespace) -> None:
    from ckvision.models.contract import ModelContract
    from ckvision.triton.repository import RepoSpec, write_repository

    sidecar = args.model.parent / "model.json"
    if not args.model.is_file() or not sidecar.is_file():
        raise MissingPackageError(f"model {args.model} (with its model.json)", _MODEL_TAGS)
    try:
        contract = ModelContract.from_env(json.loads(sidecar.read_text("utf-8")).get("env", {}))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {sidecar}: {err}; reinstall the model") from err
    spec = RepoSpec(
        backend=args.backend,
        model_name=args.model_name,
        max_batch=args.max_batch,
        dynamic_batching=args.dynamic_batching == "yes",
        preferred_batch=_ints(args.preferred_batch, "--preferred-batch"),
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        kind=f"KIND_{args.kind.upper()}",
        ort_threads=args.ort_threads,
    )
    model_dir = write_repository(args.install_dir, args.model, contract, spec)
    print(f"Triton model repository ready: {model_dir}")


def _server(args: argparse.Namespace) -> None:
    from ckvision.triton.server import TritonServer, find_triton

    given = _ints(args.ports, "--ports") if args.ports else ()
    if given and len(given) != 3:
        raise ConfigError("--ports must be three ports: http,grpc,metrics")
    ports = (given[0], given[1], given[2]) if given else None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with TritonServer(
            find_triton(args.python), args.repository, args.log_dir, ports=ports
        ) as server:
            print(
                f"tritonserver ready: http {server.http_url} grpc {server.grpc_url} "
                f"(log: {server.log_path}); Ctrl-C stops it",
                flush=True,
            )
            while not stop.wait(0.5):
                if server.proc is None or server.proc.poll() is not None:
                    raise ConfigError(f"tritonserver exited; see {server.log_path}")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _perf(args: argparse.Namespace) -> None:
    from ckvision.triton.perf import PerfSpec, run_perf_analyzer
    from ckvision.triton.server import TritonServer, find_triton

    levels = _ints(args.concurrency, "--concurrency")
    if not 1 <= len(levels) <= 3:
        raise ConfigError(f"--concurrency {args.concurrency!r}: use N or start:end[:step]")
    concurrency = (
        levels[0],
        levels[-1] if len(levels) > 1 else levels[0],
        levels[2] if len(levels) == 3 else 1,
    )
    install = find_triton(args.python)

    def run(url: str) -> list[dict[str, Any]]:
        spec = PerfSpec(
            model=args.model_name,
            url=url,
            protocol=args.protocol,
            batch=args.batch,
            concurrency=concurrency,
            shared_memory=args.shm,
            output_shm_bytes=args.batch * 4096 * 4,
            request_count=args.request_count,
            stability_percent=args.stability_percent,
        )
        return run_perf_analyzer(install, spec, args.output_dir)

    if args.url:
        records = run(args.url)
    elif args.repository is None:
        raise ConfigError("give --url of a running server or --repository to serve")
    else:
        with TritonServer(install, args.repository, args.output_dir) as server:
            records = run(server.url(args.protocol))
    for record in records:
        row = record["perf_analyzer"]
        print(
            f"concurrency {row['concurrency']:.0f}: {row['throughput']:.1f} infer/s, "
            f"p99 {row.get('p99_latency_us', 0) / 1e3:.3f} ms"
        )
    if args.record:
        from ckvision.ck.hooks.triton import record_perf_entry

        tags = [t for t in args.tags.split(",") if t] or ["triton", "perf_analyzer"]
        print(f"recorded: {record_perf_entry(args.record, tags, records)}")


def dispatch(args: argparse.Namespace) -> int:
    {"triton-repo": _repo, "triton-server": _server, "triton-perf": _perf}[args.command](args)
    return 0
