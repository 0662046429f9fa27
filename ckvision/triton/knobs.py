"""The Triton knobs of a run: instance count and dynamic batching delay of the served models,
and the engine threads of a JPEG-in ensemble's preprocess step.

``CK_TRITON_INSTANCES`` and ``CK_TRITON_MAX_QUEUE_DELAY_US`` (unset: the repository's
own values) apply to every model that does the work: the classifier, and for the JPEG-in
ensemble its preprocess step too (an ensemble itself has neither).
``CK_TRITON_PREPROCESS_THREADS`` applies to the model that preprocesses (its ``THREADS``
parameter: DALI's ``num_threads``, else the engine's pool). One place each way:

* a server this run starts serves :func:`retuned_repository`, a copy of the repository in
  the run's directory whose ``config.pbtxt`` files carry the settings (the version
  directories are links to the originals: no model file is copied);
* a server given by URL serves its own repository: :func:`mismatches` compares what it
  serves with the settings, and the run refuses a difference with one line (the
  settings cannot reach that server; its repository decides).

Either way the served values are recorded with the run's backend statistics.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError

__all__ = ["Knobs", "retuned_repository", "retune_pbtxt", "served_knobs", "mismatches"]

_GROUP_COUNT = re.compile(r"(instance_group\s*:?\s*\[\s*\{[^}]*?\bcount\s*:\s*)\d+")
_DELAY = re.compile(r"(\bmax_queue_delay_microseconds\s*:\s*)\d+")
_DYNAMIC = re.compile(r"\bdynamic_batching\s*:?\s*\{")
_ENSEMBLE = re.compile(r'\bplatform\s*:\s*"ensemble"')
_THREADS = re.compile(r'(key\s*:\s*"THREADS"\s*value\s*:\s*\{\s*string_value\s*:\s*")\d+(")')


@dataclass(frozen=True)
class Knobs:
    """What the run asks of the served models (``None``: the repository decides)."""

    instances: int | None = None
    max_queue_delay_us: int | None = None
    preprocess_threads: int | None = None  # the JPEG-in preprocess step's engine threads

    @property
    def given(self) -> bool:
        values = (self.instances, self.max_queue_delay_us, self.preprocess_threads)
        return any(v is not None for v in values)


def retune_pbtxt(text: str, knobs: Knobs) -> str:
    """``config.pbtxt`` text with ``knobs`` in it (an ensemble's is returned as it is)."""
    if _ENSEMBLE.search(text):
        return text
    if knobs.preprocess_threads is not None:  # only a preprocess step has the parameter
        text = _THREADS.sub(rf"\g<1>{knobs.preprocess_threads}\g<2>", text)
    if knobs.instances is not None:
        text, found = _GROUP_COUNT.subn(rf"\g<1>{knobs.instances}", text)
        if not found:  # Triton's default group: one instance, its default kind
            text = text.rstrip("\n") + f"\ninstance_group [ {{ count: {knobs.instances} }} ]\n"
    delay = knobs.max_queue_delay_us
    if delay is not None:
        text, found = _DELAY.subn(rf"\g<1>{delay}", text)
        if not found and _DYNAMIC.search(text):
            text = _DYNAMIC.sub(
                lambda m: f"{m.group(0)} max_queue_delay_microseconds: {delay}", text
            )
        elif not found:
            text = (
                text.rstrip("\n")
                + f"\ndynamic_batching {{ max_queue_delay_microseconds: {delay} }}\n"
            )
    return text


def retuned_repository(repo: Path, dest: Path, knobs: Knobs) -> Path:
    """A copy of model repository ``repo`` at ``dest`` with ``knobs`` in every model's
    config (the rest are links to ``repo``); returns ``dest``."""
    repo, dest = Path(repo).resolve(), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for item in sorted(repo.iterdir()):
        config = item / "config.pbtxt"
        if not config.is_file():
            (dest / item.name).symlink_to(item)
            continue
        (dest / item.name).mkdir()
        for part in sorted(item.iterdir()):
            if part.name != "config.pbtxt":
                (dest / item.name / part.name).symlink_to(part)
        text = retune_pbtxt(config.read_text(encoding="utf-8"), knobs)
        (dest / item.name / "config.pbtxt").write_text(text, encoding="utf-8")
    return dest


def served_knobs(config: Mapping[str, Any]) -> dict[str, int | None]:
    """A served model's instance count (its groups' sum) and max queue delay, from the
    server's JSON model config (``None``: no dynamic batching), and a preprocess step's
    engine threads (its ``THREADS`` parameter; absent from other models)."""
    groups = config.get("instance_group") or [{}]
    instances = sum(int(g.get("count", 1) or 1) for g in groups)
    dynamic = config.get("dynamic_batching")
    delay = None
    if isinstance(dynamic, Mapping):
        delay = int(dynamic.get("max_queue_delay_microseconds", 0) or 0)
    out: dict[str, int | None] = {"instances": instances, "max_queue_delay_us": delay}
    threads = _parameters(config).get("THREADS", "")
    if threads.isdigit():
        out["preprocess_threads"] = int(threads)
    return out


def _parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """A model config's string parameters, from the server's JSON (a mapping) or a parsed
    ``config.pbtxt`` (one ``{key, value}`` entry each)."""
    params = config.get("parameters") or {}
    if isinstance(params, Mapping) and not {"key", "value"} <= set(params):
        return {
            str(k): str(v.get("string_value", "")) if isinstance(v, Mapping) else ""
            for k, v in params.items()
        }
    entries = params if isinstance(params, list) else [params]  # one entry parses alone
    return {
        str(e.get("key")): str((e.get("value") or {}).get("string_value", ""))
        for e in entries
        if isinstance(e, Mapping)
    }


def mismatches(served: Mapping[str, Mapping[str, int | None]], knobs: Knobs) -> list[str]:
    """What differs between the served models (name -> :func:`served_knobs`) and the
    settings, one phrase each (empty: the server serves what the run asks)."""
    out = []
    for name, values in served.items():
        if knobs.instances is not None and values["instances"] != knobs.instances:
            out.append(
                f"model {name!r} runs {values['instances']} instances, "
                f"CK_TRITON_INSTANCES={knobs.instances}"
            )
        delay = knobs.max_queue_delay_us
        if delay is not None and values["max_queue_delay_us"] != delay:
            shown = values["max_queue_delay_us"]
            out.append(
                f"model {name!r} "
                + ("has no dynamic batching" if shown is None else f"waits up to {shown} us")
                + f", CK_TRITON_MAX_QUEUE_DELAY_US={delay}"
            )
        threads = knobs.preprocess_threads
        if threads is not None and values.get("preprocess_threads", threads) != threads:
            out.append(
                f"model {name!r} preprocesses with {values['preprocess_threads']} threads, "
                f"CK_TRITON_PREPROCESS_THREADS={threads}"
            )
    if knobs.preprocess_threads is not None and not any(
        "preprocess_threads" in values for values in served.values()
    ):
        out.append(
            "no served model preprocesses (CK_TRITON_PREPROCESS_THREADS is for a JPEG-in ensemble)"
        )
    return out


def refuse(url: str, problems: list[str]) -> None:
    """One line for a server that does not serve the run's knobs."""
    if problems:
        raise ConfigError(
            f"Triton server {url} serves other settings than the run asks: "
            + "; ".join(problems)
            + " (its repository decides: regenerate it, e.g. ckvision triton-repo "
            "--instances/--max-queue-delay-us, or unset these variables)"
        )
