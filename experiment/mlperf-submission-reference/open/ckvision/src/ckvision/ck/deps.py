"""Questions CK would ask, answered before CK asks them.

With ck-env / ck-mlperf / ck-tensorrt next to ours, two installed env entries can match one
dependency (our numpy and one detected by ck-env's soft, say). ``ck run --quiet`` then takes
the first in CK's own order (soft ``sort``, name, version, highest first) — deterministic,
but silent; without ``--quiet`` CK asks. :func:`check_program_deps` says, in one line,
which dependency is ambiguous, its candidates and the ``--dep_add_tags`` that picks each.
:func:`check_package_tags` refuses a tag no package knows (CK would otherwise search, ask
or fail half-way) before anything is installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ckvision.ck.tool import run_ck
from ckvision.errors import ConfigError

REPO_ALIAS = "ck-mlperf-vision"

__all__ = ["check_program_deps", "check_package_tags", "parse_dep_add_tags", "install"]


def _ck_json(args: Sequence[str]) -> dict[str, Any]:
    out = run_ck([*args, "--out=json"], capture=True).stdout
    try:
        return dict(json.loads(out[out.index("{") :]))
    except ValueError as err:
        raise ConfigError(f"'ck {' '.join(args[:2])}' printed no JSON: {err}") from err


def parse_dep_add_tags(items: Sequence[str]) -> dict[str, str]:
    """``name=tag1,tag2`` items (as --dep_add_tags.name=tags) -> {name: tags}."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, tags = item.partition("=")
        if not sep or not name or not tags:
            raise ConfigError(f"--dep-add-tags {item!r}: use NAME=TAG[,TAG]")
        out[name] = tags
    return out


def check_program_deps(
    program: str,
    dep_add_tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each run dependency of ``program`` -> the one env entry it resolves to.

    Raises ConfigError (one line) for a dependency with no candidate or with several.
    """
    dep_add_tags = dict(dep_add_tags or {})
    meta = _ck_json(["load", program])["dict"]
    deps: dict[str, Any] = meta.get("run_deps", {})
    unknown = sorted(set(dep_add_tags) - set(deps))
    if unknown:
        raise ConfigError(
            f"{program} has no dependency {unknown[0]!r}; "
            f"its dependencies: {', '.join(sorted(deps))}"
        )
    chosen: dict[str, str] = {}
    for name, dep in sorted(deps.items(), key=lambda kv: kv[1].get("sort", 0)):
        tags = ",".join(t for t in (dep.get("tags", ""), dep_add_tags.get(name, "")) if t)
        found = _ck_json(["search", "env", f"--tags={tags}", "--add_meta"]).get("lst", [])
        if not found:
            raise ConfigError(
                f"dependency {name!r} of {program} (tags {tags}) has no "
                "installed env entry; run python -m ckvision ck-setup"
            )
        if len(found) > 1:
            raise ConfigError(_ambiguous(program, name, tags, found))
        chosen[name] = str(found[0]["data_uid"])
    return chosen


def _ambiguous(program: str, name: str, tags: str, found: list[dict[str, Any]]) -> str:
    asked = set(tags.split(","))
    all_tags = [set(entry.get("meta", {}).get("tags", [])) - asked for entry in found]
    parts = []
    for entry, own in zip(found, all_tags, strict=True):
        others = set().union(*(t for t in all_tags if t is not own))
        unique = sorted(own - others) or sorted(own)
        parts.append(
            f"{entry['data_uid']} [--dep_add_tags.{name}={unique[0] if unique else '?'}]"
            f" (tags: {','.join(sorted(own))})"
        )
    return (
        f"dependency {name!r} of {program} (tags {tags}) matches {len(found)} env entries, "
        f"so CK would ask which one: {'; '.join(parts)}; add one of these "
        f"--dep_add_tags.{name}=... options (or pass --quiet to let CK take the first)"
    )


def check_package_tags(tags: str) -> dict[str, Any]:
    """The one package of ours that TAGS (tags + variations) select, or one line why not.

    Only this repository's packages are considered: ck-tensorrt's engine packages accept
    some of the same words, and ``ckvision ck-install`` installs ours by UID.
    """
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    if not wanted:
        raise ConfigError("no package tags given")
    found = _ck_json(["search", f"{REPO_ALIAS}:package:*", "--add_meta"]).get("lst", [])
    known: dict[str, set[str]] = {}
    names = {str(e["data_uid"]): str(e["data_uoa"]) for e in found}
    for entry in found:
        meta = entry.get("meta", {})
        known[str(entry["data_uid"])] = set(meta.get("tags", [])) | set(meta.get("variations", {}))
    matches = [uoa for uoa, words in known.items() if set(wanted) <= words]
    if len(matches) == 1:
        return {"package": matches[0], "tags": wanted}
    if not matches:
        best = max(known.items(), key=lambda kv: len(set(wanted) & kv[1]), default=("", set()))
        unknown = [t for t in wanted if t not in best[1]]
        raise ConfigError(
            f"no package has the tags {','.join(wanted)}: "
            f"package:{names.get(best[0])} knows none of {','.join(unknown)}; "
            "its tags and variations: "
            f"{','.join(sorted(best[1]))}"
        )
    raise ConfigError(
        f"tags {','.join(wanted)} match {len(matches)} packages "
        f"({', '.join(sorted(names[m] for m in matches))}); add a tag that names one"
    )


def install(tags: str) -> None:
    """``ck install`` the one package of ours that TAGS select (checked first), by its UID."""
    chosen = check_package_tags(tags)
    run_ck(
        ["install", f"package:{chosen['package']}", f"--tags={','.join(chosen['tags'])}", "--quiet"]
    )
