"""When several installed datasets match a dependency: say which tags pick one.

CK would ask interactively (or, with ``--quiet``, take the first silently). The CK hooks
call :func:`ambiguity_error` with the env entries that matched; it returns one line that
lists the candidates and the tags that tell them apart, for ``--dep_add_tags.<dep>=``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ckvision.errors import ConfigError

__all__ = ["ambiguity_error", "distinguishing_tags"]


def distinguishing_tags(candidates: Sequence[Sequence[str]]) -> list[list[str]]:
    """For each candidate's tag list, its tags that not every candidate has (in order)."""
    common = set(candidates[0]).intersection(*map(set, candidates[1:])) if candidates else set()
    return [[t for t in dict.fromkeys(tags) if t not in common] for tags in candidates]


def ambiguity_error(
    dep: str, query: str, candidates: Sequence[tuple[str, Sequence[str]]]
) -> ConfigError | None:
    """One-line error when more than one ``(uid, tags)`` candidate matched ``query``
    for dependency ``dep``; None when the choice is unique."""
    if len(candidates) < 2:
        return None
    extra = distinguishing_tags([tags for _uid, tags in candidates])
    listed = "; ".join(
        f"{uid} ({','.join(tags) or 'same tags'})"
        for (uid, _tags), tags in zip(candidates, extra, strict=True)
    )
    first = ",".join(extra[0]) or "<tags>"
    return ConfigError(
        f"{len(candidates)} installed entries match {dep} ({query}): {listed}; "
        f"pick one with --dep_add_tags.{dep}=<its tags>, e.g. --dep_add_tags.{dep}={first}"
    )
