"""Auto-tuning: choose the concurrency layout and LoadGen's expectations from a short probe.

With no tuning flags, Offline and Server runs take ``workers x threads x batch`` from
the fastest layout of a short probe on the actual model and machine; SingleStream and
MultiStream get the expected latency, Offline and Server the expected / target QPS,
that make a default run VALID. Every value the user gave (CK env var or flag) wins and
limits the search. Measurements are cached per (model, backend, machine); the choice is
said in one line and recorded in the run's entry under ``tuning``.

A choice that holds (issue 19): the finalists are measured in repeated rounds, and a
probe whose rounds disagree by more than :data:`SPREAD_LIMIT` (a busy machine) is used
for this run but never cached; the probe's spread is recorded. On a CPU the best layout of
single-threaded workers is always a finalist, and wins within :data:`THREADS_MARGIN` of
the fastest (a session's threads wait for its slowest core at every operator). After an Offline run,
:func:`validate_choice` compares what the run achieved with what the probe predicted: a
run that misses the prediction by more than :data:`MISS_LIMIT` (either way: a probe taken
under load predicts too little) drops the cached choice, so the next run probes again.
The entry records the choice, whether it came from the cache, the spread and the check.

A Triton run that starts its own server: the instances and dynamic batching delay left
open are chosen after the layout, then a JPEG-in ensemble's preprocessing threads, each
candidate served by a probe server of its own (:mod:`ckvision.tuning.server_knobs`); the
entry's ``tuning.server`` holds what they measured, and the expectations follow the
values chosen.

JPEG input sent to a Triton JPEG-in ensemble: the probe sends the files themselves, as the
run does. JPEG input preprocessed on this side: the probe also chooses
``CK_PREPROCESS_THREADS`` when it is not given (:mod:`ckvision.tuning.preprocess`), at
the batch the run will use, and then ``CK_PREPROCESS_PREFETCH`` (batches formed ahead,
not in SingleStream) from a probe of the pipeline itself at the run's layout
(:mod:`ckvision.tuning.pipeline`); the entry's ``tuning.preprocess`` and
``tuning.prefetch`` hold what they measured.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.backends import BackendOptions, create_backend
from ckvision.backends.base import Backend
from ckvision.config import ENV_VARS, Mode, RunConfig, Scenario
from ckvision.data.cache import PreprocessedDataset
from ckvision.errors import CkVisionError
from ckvision.harness.sut import batches_are_views
from ckvision.tuning.cache import cache_key, cache_path, drop_choice, load_choice, store_choice
from ckvision.tuning.pipeline import pipeline_layouts, tune_prefetch
from ckvision.tuning.preprocess import tune_preprocess_threads
from ckvision.tuning.probe import (
    ACCEL_WORKERS,
    Layout,
    Measurement,
    candidate_layouts,
    close_all,
    harness_cost_s,
    measure_latency,
    measure_layout,
    output_work,
    usable_cores,
)
from ckvision.tuning.probe import spread as spread_of  # `spread`: a local name
from ckvision.tuning.server_knobs import knob_candidates, thread_candidates, tune_server_knobs

__all__ = [
    "autotune",
    "validate_choice",
    "SPREAD_LIMIT",
    "THREADS_MARGIN",
    "MISS_LIMIT",
    "explicit_settings",
    "Layout",
    "PROBE_BUDGET_S",
    "OFFLINE_QPS_FACTOR",
    "SERVER_QPS_FACTOR",
    "LATENCY_FACTOR",
]

PROBE_SAMPLES = 64  # distinct samples the probe reads (the first of the dataset)
PROBE_BUDGET_S = 8.0  # paid once (cached): half for the candidates, half for the best two
FINAL_ROUNDS = 3  # the two best layouts are re-measured in this many alternating rounds
OFFLINE_QPS_FACTOR = 1.3  # expected QPS above the probe: the run lasts >= min duration
SERVER_QPS_FACTOR = 0.5  # target QPS well under the probe's ceiling: latency bound holds
LATENCY_FACTOR = 0.5  # expected latency under the probe: LoadGen generates enough queries
# Our per-sample work only (LoadGen's comes on top): the estimate errs high, so an
# Offline run lasts at least its minimum duration (too low a QPS ends it INVALID).
HARNESS_COST_FACTOR = 1.0
# a neighbouring batch (half, twice) the probe put more than this behind the chosen one
# is not tried again inside the run (CK_ADAPTIVE_BATCH)
NEIGHBOUR_MARGIN = 0.05
SPREAD_LIMIT = 0.10  # (max - min) / median of a finalist's rounds above this: not cached
# On a CPU, a layout with fewer intra-op threads per worker wins when it is within this of
# the fastest: a session's threads meet at every operator, so it runs at the pace of its
# slowest core, while single-threaded workers each keep their own. On a VM whose cores
# slow down unevenly a few seconds at a time, a short probe can catch 1 x 2 threads in a
# fast moment (seen on 2 vCPUs: 194 vs 2 x 1 thread's 190 in the probe, then 10 s runs
# of 140-190 against a steady 200).
THREADS_MARGIN = 0.03
MISS_LIMIT = 0.10  # |achieved / predicted - 1| above this: the cached choice is dropped
_LAYOUT_FIELDS = {"workers": "workers", "threads": "threads", "batch": "batch_size"}


def explicit_settings(env: Mapping[str, str], overrides: Mapping[str, Any]) -> set[str]:
    """Names of the RunConfig fields the user set, by CK env var or flag."""
    given = {name for name, (var, _h) in ENV_VARS.items() if env.get(var, "").strip()}
    return given | {name for name, value in overrides.items() if value is not None}


def autotune(
    config: RunConfig,
    model_path: Any,
    contract: Any,
    dataset_dir: Any,
    explicit: set[str],
    *,
    log: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
    budget_s: float = PROBE_BUDGET_S,
) -> tuple[RunConfig, dict[str, Any] | None]:
    """``config`` with the tuned values filled in, and the record of what was chosen."""
    if config.autotune == "off":
        return config, None
    from ckvision.provenance import collect_provenance

    env = os.environ if env is None else env
    dataset = PreprocessedDataset.open(dataset_dir).for_model(contract)  # as the run sees it
    # distinct samples, as a run reads them (one sample repeated stays in the cache and
    # flattered the layouts that reuse it most: seen, 160 samples/s probed, 120 in the run)
    samples = np.ascontiguousarray(dataset.images[:PROBE_SAMPLES])
    options = {
        "provider": config.execution_provider,
        "precision": config.precision,
        "device": config.device,
        "cuda_graphs": config.cuda_graphs,  # graphs or not: other figures on a GPU
    }
    if config.backend == "triton":  # whose server, serving what: other figures
        options["server"] = config.triton_urls or "started by the run"
        options["knobs"] = f"{config.triton_instances},{config.triton_max_queue_delay_us}"
    key = cache_key(model_path, config.backend, options, collect_provenance())
    path = cache_path(env)
    cached = load_choice(path, key) or {}
    measured: dict[str, Any] = dict(cached.get("measured", {}))
    backends: dict[tuple[int, int], Backend] = {}
    # where the probe's Triton servers keep their repository copies and logs: removed
    # after the probe, unless it failed with our error (which names a log in it)
    work: list[Path] = []

    def run_dir(name: str) -> Path | None:
        if config.backend != "triton":
            return None
        if not work:
            work.append(Path(tempfile.mkdtemp(prefix="ckvision-autotune-")))
        return work[0] / name

    def open_backend(tuned: RunConfig, where: str) -> Backend:
        # the run's own options (Triton URLs, engine cache...), as the probe varies them
        opts = BackendOptions.from_config(tuned, Path(model_path), run_dir=run_dir(where))
        session = create_backend(config.backend, model_path, contract, opts)
        session.load()
        return session

    def backend(threads: int, streams: int = 0) -> Backend:
        if (threads, streams) not in backends:
            # runners / execution contexts (BackendOptions.streams) for as many workers
            # as any layout of the probe has: one each, as the run will give them
            workers = max(config.workers, *ACCEL_WORKERS)
            tuned = config.with_(threads=threads, workers=workers, cuda_streams=streams)
            where = f"t{threads}" + (f".s{streams}" if streams else "")
            backends[(threads, streams)] = open_backend(tuned, where)
        return backends[(threads, streams)]

    forms: list[bool] = []

    def gathers() -> bool:
        """True: the run's batches are random rows (gathered), as the probe must time
        them; False: views of consecutive rows (:func:`batches_are_views`)."""
        if not forms:
            threads = config.threads if "threads" in explicit else usable_cores()
            views = batches_are_views(
                config.scenario,
                backend(threads).gathers_rows,
                config.input_format == "jpeg",
                samples[0].nbytes,
            )
            forms.append(not views)
        return forms[0]

    started = time.perf_counter()
    try:
        served = _served_encoded(config, backend)
        if served:  # the probe sends what the run sends: the files themselves
            samples = _encoded_samples(Path(dataset_dir), contract, config)
        if config.scenario in (Scenario.OFFLINE, Scenario.SERVER):
            changes, record = _tune_layout(
                config,
                explicit,
                samples,
                backend,
                gathers,
                measured,
                budget_s,
                cached.get("spread"),
            )
            if _starts_server(config):
                changes, record = _tune_server(
                    config,
                    samples,
                    int(contract.num_classes),
                    served,
                    open_backend,
                    gathers,
                    changes,
                    record,
                    measured,
                    budget_s,
                )
        else:
            changes, record = _tune_latency(config, explicit, samples, backend, measured, budget_s)
        forms_here = config.input_format == "jpeg" and not served
        if forms_here and "preprocess_threads" not in explicit:
            batch = 1 if config.scenario is Scenario.SINGLE_STREAM else config.batch_size
            pre = tune_preprocess_threads(
                Path(dataset_dir),
                contract,
                config.preprocess_engine,
                config.dali_device,
                int(changes.get("batch_size", batch)),
                usable_cores(),
                measured,
                budget_s / 4,
            )
            line = (
                f"{pre['threads']} preprocessing threads ({pre['engine']}, "
                f"{pre['images_per_s']:.0f} images/s in the probe)"
            )
            changes, record = _with_choice(
                changes, record, {"preprocess_threads": pre["threads"]}, line, "preprocess", pre
            )
        if (
            forms_here
            and "preprocess_prefetch" not in explicit
            and config.scenario is not Scenario.SINGLE_STREAM  # inline: nothing to overlap
        ):
            changes, record = _tune_pipeline(
                config, Path(dataset_dir), contract, backend, changes, record, measured, budget_s
            )
    except CkVisionError as err:
        if work and str(work[0]) in str(err):
            work.clear()  # kept: the error names a log in it
        raise
    finally:
        close_all(backends.values())
        if work:
            shutil.rmtree(work[0], ignore_errors=True)
    if not record:
        return config, None
    if "target_qps" in changes:
        record["summary"] += f", target QPS {changes['target_qps']}"
    record.update(
        {
            "cache_key": key,
            "cache": str(path),
            "probe_s": round(time.perf_counter() - started, 3),
            "explicit": sorted(explicit),
        }
    )
    spread = record.get("spread")
    if record["from_cache"]:
        record["spread"] = cached.get("spread")  # the spread of the probe that was cached
        record["cached"] = True
    elif spread is not None and spread > SPREAD_LIMIT:
        record["cached"] = False
        record["not_cached"] = (
            f"the probe's repeated measurements disagree by {spread:.0%} (> {SPREAD_LIMIT:.0%}):"
            " the machine is busy; used for this run only, the next run probes again"
        )
    else:
        store_choice(path, key, {"measured": measured, "spread": spread, "updated": time.time()})
        record["cached"] = True
    tuned = config.with_(**changes)
    source = "cached" if record["from_cache"] else f"probe {record['probe_s']:.1f} s"
    if not record["cached"]:
        source += f", not cached: spread {spread:.0%}"
    log(
        f"ckvision: auto-tuned {record['summary']} ({source}; "
        "explicit flags win, CK_AUTOTUNE=off disables)"
    )
    return tuned, record


def _neighbours_to_try(
    best: Measurement, results: list[Measurement], spread: float | None = None
) -> str:
    """The ``CK_ADAPTIVE_BATCH`` value for a run at ``best``'s layout: which neighbouring
    batches (half, twice, same workers and threads) the run tries, those the probe did not
    measure or measured within :data:`NEIGHBOUR_MARGIN` of ``best``, or within the probe's
    own ``spread`` when that is wider: a lead smaller than how far the probe's repeated
    measurements disagreed is not one it can tell (seen on 2 vCPUs: batch 4 chosen at a
    spread of 12 %, batch 2 put 5.0 % behind it, and 10 % faster in 10 s runs)."""
    margin = max(NEIGHBOUR_MARGIN, spread or 0.0)
    rates = {m.layout: m.samples_per_s for m in results}
    lay = best.layout
    near = [
        name
        for name, batch in (("half", lay.batch // 2), ("double", lay.batch * 2))
        if batch >= 1
        and batch != lay.batch
        and rates.get(Layout(lay.workers, lay.threads, batch, lay.streams), best.samples_per_s)
        >= best.samples_per_s * (1 - margin)
    ]
    return {0: "off", 2: "on"}.get(len(near)) or near[0]


def _tune_layout(
    config: RunConfig,
    explicit: set[str],
    samples: np.ndarray,
    backend: Callable[..., Backend],
    gathers: Callable[[], bool],
    measured: dict[str, Any],
    budget_s: float,
    cached_spread: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    fixed = {k: getattr(config, f) for k, f in _LAYOUT_FIELDS.items() if f in explicit}
    want_qps = "target_qps" not in explicit and config.mode is Mode.PERFORMANCE
    if len(fixed) == 3 and not want_qps:
        return {}, {}
    cores = usable_cores()
    capabilities = backend(fixed.get("threads", cores)).capabilities
    sharing = capabilities.stream_sharing
    gather = gathers()
    if "cuda_streams" in explicit:
        fixed["streams"] = config.cuda_streams
    layouts = [
        lay
        for lay in candidate_layouts(
            cores, capabilities.max_batch, None, capabilities.accelerator, sharing
        )
        if all(getattr(lay, k) == v for k, v in fixed.items())
    ]
    if not layouts:  # the user's values are outside the grid: probe exactly them
        layouts = [
            Layout(
                fixed.get("workers", 1),
                fixed.get("threads", cores),
                fixed.get("batch", 1),
                fixed.get("streams", 0) if sharing else 0,
            )
        ]
    todo = [lay for lay in layouts if _lkey(lay, gather) not in measured]

    def measure(lay: Layout, seconds: float) -> float:
        runner = backend(lay.threads, lay.streams)
        if capabilities.accelerator:
            # its runners (CUDA graphs, cuDNN's kernel choice) made here, not by the timed
            # threads: made on a fresh thread each took 3-8 s (seen on an H200), and the
            # probe of 27 layouts 2 minutes; the run makes them before its test too
            runner.warmup(samples[np.arange(lay.batch) % len(samples)], iterations=1)
        return measure_layout(
            runner, samples, lay, seconds, output_work(runner), gather=gather
        ).samples_per_s

    for lay in todo:
        rate = measure(lay, budget_s / 2 / len(todo))
        measured[_lkey(lay, gather)] = round(rate, 2)
    spread = cached_spread  # all measured before: the spread of the probe that did it
    if todo:
        # A quiet moment on a shared machine flatters whichever layout it falls on (seen:
        # a layout 20% slower than the best won a one-shot probe). The two best are
        # measured again in turns, A B A B A B, and each keeps the median of its rounds;
        # how far the rounds disagree is the probe's spread (a busy machine: not cached).
        ranked = sorted(todo, key=lambda lay: -measured[_lkey(lay, gather)])
        finalists = ranked[:2]
        if not capabilities.accelerator:
            # the best of the leanest workers is always timed in turns too: the choice
            # prefers it within THREADS_MARGIN, so its figure must be as good as the rest
            lean = min(lay.threads for lay in ranked)
            leanest = next(lay for lay in ranked if lay.threads == lean)
            if leanest not in finalists:
                finalists.append(leanest)
        rounds: dict[str, list[float]] = {_lkey(lay, gather): [] for lay in finalists}
        share = budget_s / 2 / (FINAL_ROUNDS * len(finalists))
        for _round in range(FINAL_ROUNDS):
            for lay in finalists:
                rounds[_lkey(lay, gather)].append(measure(lay, share))
        for key, rates in rounds.items():
            measured[key] = round(float(np.median(rates)), 2)
        spread = max(spread_of(rates) for rates in rounds.values())
    results = [Measurement(lay, measured[_lkey(lay, gather)]) for lay in layouts]
    best, preferred = _choose(results, capabilities.accelerator)
    cost_key = f"harness_cost.b{best.layout.batch}"
    if cost_key not in measured:
        classes = backend(best.layout.threads).contract.num_classes
        measured[cost_key] = HARNESS_COST_FACTOR * harness_cost_s(best.layout.batch, classes)
    expected = 1.0 / (1.0 / max(best.samples_per_s, 1e-9) + measured[cost_key])
    changes: dict[str, Any] = {
        f: getattr(best.layout, k) for k, f in _LAYOUT_FIELDS.items() if f not in explicit
    }
    if sharing and "cuda_streams" not in explicit:
        changes["cuda_streams"] = best.layout.streams
    if (
        "batch_size" in changes
        and "adaptive_batch" not in explicit
        and config.scenario is Scenario.OFFLINE
        and config.mode is Mode.PERFORMANCE
    ):
        # the run checks the probe's batch against the neighbours the probe could not tell
        # from it (a phase on a clearly slower batch only costs the run its deficit)
        changes["adaptive_batch"] = _neighbours_to_try(best, results, spread)
    summary = best.layout.describe() + f" ({best.samples_per_s:.1f} samples/s in the probe)"
    if want_qps:
        changes["target_qps"] = _target_qps(config, expected)
    return changes, {
        "layout": best.layout.describe(),
        "chosen": changes,
        "samples_per_s": best.samples_per_s,
        "summary": summary,
        "expected_samples_per_s": round(expected, 2),
        "candidates": [m.as_record() for m in results],
        "batches": "gathered rows" if gather else "views of consecutive rows",
        "from_cache": not todo,
        "spread": None if spread is None else round(spread, 4),
        **({"preferred": preferred} if preferred else {}),
    }


def _choose(results: list[Measurement], accelerator: bool) -> tuple[Measurement, str | None]:
    """The layout a run takes from the probe's ``results``, and why, when it is not the
    fastest: on a CPU, the fewest threads per worker within :data:`THREADS_MARGIN` of the
    fastest (then the fastest of those); on an accelerator, the fastest."""
    fastest = max(results, key=lambda m: m.samples_per_s)
    if accelerator:
        return fastest, None
    floor = fastest.samples_per_s * (1 - THREADS_MARGIN)
    near = [m for m in results if m.samples_per_s >= floor]
    pick = min(near, key=lambda m: (m.layout.threads, -m.samples_per_s))
    if pick.layout.threads == fastest.layout.threads:
        return fastest, None
    return pick, (
        f"{pick.layout.describe()} ({pick.samples_per_s:.1f} samples/s) over "
        f"{fastest.layout.describe()} ({fastest.samples_per_s:.1f}): within "
        f"{THREADS_MARGIN:.0%}, fewer threads per worker (they keep their pace when one "
        "core slows)"
    )


def _tune_latency(
    config: RunConfig,
    explicit: set[str],
    samples: np.ndarray,
    backend: Callable[[int], Backend],
    measured: dict[str, Any],
    budget_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    if "target_latency_ms" in explicit or config.mode is not Mode.PERFORMANCE:
        return {}, {}
    batch = 1 if config.scenario is Scenario.SINGLE_STREAM else config.batch_size
    calls = -(-config.samples_per_query // batch)
    key = f"latency.t{config.threads}.b{batch}"
    cached = key in measured
    spread = None
    if not cached:
        data = np.ascontiguousarray(samples[np.arange(batch) % len(samples)])
        runner = backend(config.threads)
        rounds = [
            measure_latency(runner, data, min(budget_s, 1.0) / FINAL_ROUNDS)
            for _round in range(FINAL_ROUNDS)
        ]
        measured[key] = float(np.median(rounds))
        spread = spread_of(rounds)
    expected_ms = round(max(measured[key] * calls * 1e3 * LATENCY_FACTOR, 1e-6), 6)
    return (
        {"target_latency_ms": expected_ms},
        {
            "chosen": {"target_latency_ms": expected_ms},
            "query_latency_ms": round(measured[key] * calls * 1e3, 6),
            "summary": f"expected latency {expected_ms:.3f} ms "
            f"(probe: {measured[key] * calls * 1e3:.2f} ms per query)",
            "from_cache": cached,
            "spread": None if spread is None else round(spread, 4),
        },
    )


def _tune_pipeline(
    config: RunConfig,
    dataset_dir: Path,
    contract: Any,
    backend: Callable[[int], Backend],
    changes: dict[str, Any],
    record: dict[str, Any],
    measured: dict[str, Any],
    budget_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """JPEG input formed here: the pipeline probe's layout (among the inference probe's
    near-best) and prefetch depth joined to the choice and record so far."""
    fields = list(_LAYOUT_FIELDS.values())
    run_layout = tuple(int(changes.get(f, getattr(config, f))) for f in fields)
    ahead = tune_prefetch(
        dataset_dir,
        contract,
        config.preprocess_engine,
        config.dali_device,
        int(changes.get("preprocess_threads", config.preprocess_threads)),
        backend,
        pipeline_layouts(
            (run_layout[0], run_layout[1], run_layout[2]),
            record.get("candidates") or [],
        ),
        measured,
        budget_s / 2,
        output_work,
    )
    picked = ahead["layout"]  # workers, threads, batch
    line = (
        f"{ahead['depth']} batch(es) formed ahead "
        f"({ahead['images_per_s']:.0f} images/s in the pipeline probe)"
    )
    if tuple(picked.values()) != run_layout:
        layout = Layout(**picked)
        line = f"pipeline {layout.describe()}, {line}"
        moved = {_LAYOUT_FIELDS[name]: value for name, value in picked.items()}
        changes = {**changes, **moved}
        record = {**record, "layout": layout.describe()}
        record["chosen"] = {**record["chosen"], **moved}
    changes, record = _with_choice(
        changes, record, {"preprocess_prefetch": ahead["depth"]}, line, "prefetch", ahead
    )
    return changes, record


def _starts_server(config: RunConfig) -> bool:
    """A Triton run that starts its own server: its instances and delay can be chosen
    (a server given by URL serves its own repository)."""
    return config.backend == "triton" and not config.triton_urls.strip()


def _tune_server(
    config: RunConfig,
    samples: np.ndarray,
    classes: int,
    preprocesses: bool,
    open_backend: Callable[[RunConfig, str], Backend],
    gathers: Callable[[], bool],
    changes: dict[str, Any],
    record: dict[str, Any],
    measured: dict[str, Any],
    budget_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The served models' instances and delay left open, then (``preprocesses``: a JPEG-in
    ensemble) its preprocessing threads (:mod:`ckvision.tuning.server_knobs`), timed at the
    run's layout, joined to the choice and record so far; the run's expectations follow
    the rate of what was chosen."""
    layout = Layout(*(int(changes.get(f, getattr(config, f))) for f in _LAYOUT_FIELDS.values()))
    cores = usable_cores()
    pairs = knob_candidates(cores, config.triton_instances, config.triton_max_queue_delay_us)
    open_threads = preprocesses and config.triton_preprocess_threads is None
    threads = thread_candidates(cores) if open_threads else []
    if len(pairs) < 2 and len(threads) < 2:
        return changes, record
    gather = gathers()

    def serve(instances: int, delay_us: int, pre: int | None) -> Backend:
        tuned = config.with_(
            threads=layout.threads,
            triton_instances=instances,
            triton_max_queue_delay_us=delay_us,
            triton_preprocess_threads=pre,
        )
        return open_backend(tuned, f"i{instances}.q{delay_us}.p{pre}")

    def rate(session: Backend, seconds: float) -> float:
        return measure_layout(
            session, samples, layout, seconds, output_work(session), gather=gather
        ).samples_per_s

    pre = config.triton_preprocess_threads
    served: dict[str, Any] = {}
    if len(pairs) > 1:
        served = tune_server_knobs(
            ("instances", "max_queue_delay_us"),
            pairs,
            lambda i, d: serve(i, d, pre),
            rate,
            lambda i, d: f"server.i{i}.q{d}.p{pre}.{_lkey(layout, gather)}",
            measured,
            budget_s if len(threads) < 2 else budget_s * 2 / 3,
        )
    instances, delay = (served["instances"], served["max_queue_delay_us"]) if served else pairs[0]
    served = {"instances": instances, "max_queue_delay_us": delay, **served}
    chosen: dict[str, Any] = {"triton_instances": instances, "triton_max_queue_delay_us": delay}
    line = f"Triton {instances} instance(s) per served model, max queue delay {delay} us"
    if len(threads) > 1:
        by_threads = tune_server_knobs(
            ("preprocess_threads",),
            threads,
            lambda t: serve(instances, delay, t),
            rate,
            lambda t: f"server.i{instances}.q{delay}.p{t}.{_lkey(layout, gather)}",
            measured,
            budget_s / 3 if served else budget_s,
        )
        chosen["triton_preprocess_threads"] = by_threads["preprocess_threads"]
        line += f", {by_threads['preprocess_threads']} preprocessing thread(s) per instance"
        served = {
            **served,
            "preprocess_threads": by_threads["preprocess_threads"],
            "preprocess_candidates": by_threads["candidates"],
            "samples_per_s": by_threads["samples_per_s"],
            "from_cache": served.get("from_cache", True) and by_threads["from_cache"],
            "spread": max(
                (s for s in (served.get("spread"), by_threads["spread"]) if s is not None),
                default=None,
            ),
        }
    line += f" ({served['samples_per_s']:.1f} samples/s in the probe)"
    cost_key = f"harness_cost.b{layout.batch}"
    if cost_key not in measured:
        measured[cost_key] = HARNESS_COST_FACTOR * harness_cost_s(layout.batch, classes)
    expected = 1.0 / (1.0 / max(served["samples_per_s"], 1e-9) + measured[cost_key])
    if "target_qps" in changes:
        chosen["target_qps"] = _target_qps(config, expected)
    changes, record = _with_choice(changes, record, chosen, line, "server", served)
    record["expected_samples_per_s"] = round(expected, 2)
    return changes, record


def _target_qps(config: RunConfig, expected: float) -> float:
    """What LoadGen is told to expect from a run the probe expects ``expected`` samples/s of."""
    factor = OFFLINE_QPS_FACTOR if config.scenario is Scenario.OFFLINE else SERVER_QPS_FACTOR
    return round(expected * factor, 2)


def _served_encoded(config: RunConfig, backend: Callable[[int], Backend]) -> bool:
    """Whether the run sends JPEG files to a server that preprocesses them (a Triton
    JPEG-in ensemble): the probe then sends files too, and nothing is formed here."""
    if config.input_format != "jpeg" or config.backend != "triton":
        return False
    return bool(getattr(backend(config.threads), "takes_encoded", False))


def _encoded_samples(dataset_dir: Path, contract: Any, config: RunConfig) -> np.ndarray:
    """The first :data:`PROBE_SAMPLES` encoded files of the run's dataset, as the run's
    batches carry them."""
    from ckvision.data.encoded import EncodedDataset, encoded_batch

    dataset = EncodedDataset.open(
        dataset_dir, contract, config.preprocess_engine, device=config.dali_device
    )
    try:
        return encoded_batch([dataset.read(i) for i in range(min(PROBE_SAMPLES, dataset.size))])
    finally:
        dataset.close()


def _with_choice(
    changes: dict[str, Any],
    record: dict[str, Any],
    chosen: dict[str, Any],
    line: str,
    key: str,
    detail: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The choice and record so far with the fields of ``chosen`` in: ``line`` joins the
    summary, ``detail`` (what its probe saw) goes under ``record[key]``, its spread (if it
    has one) into the probe's."""
    if record:
        record = {
            **record,
            "summary": f"{record['summary']}, {line}",
            "from_cache": record["from_cache"] and detail["from_cache"],
        }
    else:
        record = {"chosen": {}, "summary": line, "from_cache": detail["from_cache"], "spread": None}
    spreads = [s for s in (record.get("spread"), detail.get("spread")) if s is not None]
    record["spread"] = max(spreads) if spreads else None
    record["chosen"] = {**record["chosen"], **chosen}
    record[key] = detail
    return {**changes, **chosen}, record


def validate_choice(
    record: Mapping[str, Any] | None,
    achieved_samples_per_s: float | None,
    *,
    scenario: Scenario = Scenario.OFFLINE,
    in_run: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check a tuned Offline run against the probe's prediction; drop the cached choice
    when the run misses it by more than :data:`MISS_LIMIT` (the next run probes again).

    Returns what goes into the entry's ``tuning.validation``.
    """
    predicted = (record or {}).get("expected_samples_per_s")
    if not record or predicted is None:
        return {"checked": False, "why": "no layout was tuned (SingleStream/MultiStream)"}
    if scenario is not Scenario.OFFLINE:
        return {"checked": False, "why": "a Server run runs at its target QPS, not its limit"}
    if achieved_samples_per_s is None or achieved_samples_per_s <= 0:
        return {"checked": False, "why": "the run measured no throughput (accuracy mode)"}
    predicted, low, high = _prediction(record, float(predicted))
    ratio = achieved_samples_per_s / predicted
    held = low * (1 - MISS_LIMIT) <= achieved_samples_per_s <= high * (1 + MISS_LIMIT)
    tuned_batch = (record.get("chosen") or {}).get("batch_size")
    tried = dict((in_run or {}).get("tried") or {})
    moved = bool(  # the run found a batch more than MISS_LIMIT faster than the probe's
        in_run
        and in_run.get("settled")
        and tuned_batch
        and in_run.get("batch") != tuned_batch
        and str(tuned_batch) in tried
        and tried.get(str(in_run.get("batch")), 0.0) > tried[str(tuned_batch)] * (1 + MISS_LIMIT)
    )
    held = held and not moved
    out: dict[str, Any] = {
        "checked": True,
        "predicted_samples_per_s": predicted,
        **({"expected_range": [round(low, 2), round(high, 2)]} if low != high else {}),
        "achieved_samples_per_s": round(achieved_samples_per_s, 2),
        "ratio": round(ratio, 4),
        "held": held,
    }
    if moved:
        assert in_run is not None
        out["in_run_batch"] = in_run.get("batch")
    if held:
        out["action"] = "kept" if record.get("cached") else "none (the probe was not cached)"
        return out
    path = Path(record["cache"]) if record.get("cache") else cache_path(env)
    dropped = drop_choice(path, str(record.get("cache_key", "")))
    out["action"] = "dropped: the next run probes again" if dropped else "none (not cached)"
    why = (
        f"settled on batch {out['in_run_batch']} over the probe's {tuned_batch}"
        if moved
        else f"reached {ratio:.0%} of the auto-tuner's prediction "
        f"({achieved_samples_per_s:.1f} vs {predicted:.1f} samples/s, more than "
        f"{MISS_LIMIT:.0%} off)"
        if low == high
        else f"reached {achieved_samples_per_s:.1f} samples/s, more than {MISS_LIMIT:.0%} "
        f"outside the {low:.1f}-{high:.1f} the probe's inference and preprocessing rates allow"
    )
    log(f"ckvision: the run {why}; " + ("the next run probes again" if dropped else "not cached"))
    return out


def _prediction(record: Mapping[str, Any], inference: float) -> tuple[float, float, float]:
    """What a tuned Offline run should reach: (predicted, low, high).

    Preprocessed input: the probe's inference rate. JPEG input whose pipeline was probed
    (``record["prefetch"]``): that probe's rate, since it timed the run's own path. JPEG
    input with only the preprocessing threads probed (``record["preprocess"]``): between
    the two stages one after the other on the same cores (``1 / (1/inference +
    1/preprocessing)``) and the slower stage alone (perfect overlap)."""
    pipeline = float((record.get("prefetch") or {}).get("images_per_s") or 0.0)
    if pipeline > 0:
        return pipeline, pipeline, pipeline
    pre = float((record.get("preprocess") or {}).get("images_per_s") or 0.0)
    if pre <= 0:
        return inference, inference, inference
    return inference, 1.0 / (1.0 / inference + 1.0 / pre), min(inference, pre)


def _lkey(layout: Layout, gather: bool) -> str:
    """The probe's cache key of ``layout``, timed on gathered batches or on views."""
    shared = f".s{layout.streams}" if layout.streams else ""
    form = ".rows" if gather else ".views"
    return f"w{layout.workers}.t{layout.threads}.b{layout.batch}{shared}{form}"
