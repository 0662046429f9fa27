"""The README cannot drift: every command in its ```bash blocks is checked against the code.

* ``python -m ckvision ...`` -> ``ckvision.cli.build_parser()`` accepts it (placeholders below);
  ``ckvision ck-install TAGS`` also selects exactly one of our packages.
* ``ck run|benchmark program:NAME`` -> NAME is a program here, each ``--dep_add_tags.X`` names
  one of its dependencies (and model/dataset tags that one of our packages has), each
  ``--env.VAR`` is a setting or a variable the program reads.
* ``ck install package --tags=T`` -> T selects exactly one of our packages
  (``ckvision.ck.deps.check_package_tags``, through the real ck on a CK_REPOS of its own).
* ``make T`` -> a Makefile target; ``benchmarks/X.py --flag`` -> the script and its flags exist.
* ``~/CK-TOOLS/<folder>`` -> the folder CK makes for that package (its default variations
  appended, sorted).
* anything else -> the explicit allow-list ``OTHER_COMMANDS``.

The one table of figures is the output of the command it names, run on ``experiment/``; a
measured-looking figure elsewhere fails the test. Today's wrong examples fail the checker
(``test_the_checker_refuses_the_old_wrong_examples``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ckvision.config import declared_env_vars

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Placeholders the README uses in its bash blocks, and what the test puts in their place.
PLACEHOLDERS = {
    "$GIT_URL": "https://github.com/someone/ck-mlperf-vision.git",
    "$MY_MODEL_DIR": "/tmp/my-model",
    "$(which python3)": "/usr/bin/python3",
    "$PWD": "/tmp/checkout",
    "$M": "/tmp/model.onnx",
    "$(ck locate env --tags=dataset,imagenet,preprocessed,full)": "/tmp/ck-env",
}
# Commands checked by name only: (first words) -> why that is enough.
OTHER_COMMANDS = {
    ("git", "clone"): "git",
    ("cd",): "shell",
    ("mkdir",): "shell",
    ("export",): "shell",
    ("source", ".venv/bin/activate"): "the venv make demo creates",
    ("python3.11", "-m", "pip", "install", "ck==2.6.4"): "the one pin ck needs",
    ("ck", "pull", "repo"): "ck's own command",
    ("ck", "add", "repo:ck-mlperf-vision"): "ck's own command",
    ("ck", "detect", "soft"): "ck's own command (our softs carry upstream's tags)",
    ("cm",): "cmind (tests/test_ck_citizenship.py runs these)",
    ("mlc",): "mlcflow (tests/test_ck_citizenship.py runs these)",
    ("mlcr",): "mlcflow (tests/test_ck_citizenship.py runs these)",
    ("pip", "install", "ckvision[cluster]"): "the cluster extra (pyproject.toml)",
    ("ray", "start"): "Ray's own command (tests/test_cluster.py starts real nodes)",
}
# Variables the package hooks read from `ck install package --env.X=...`: each package's
# declared install_env and what its install.sh expands, plus those its Python reads.
PACKAGE_ENV = (
    {
        var
        for meta in ROOT.glob("package/*/.cm/meta.json")
        for var in json.loads(meta.read_text())["customize"].get("install_env", {})
    }
    | {
        var
        for script in ROOT.glob("package/*/install.sh")
        for var in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script.read_text())
    }
    | {"CKVISION_MODEL_MIRROR"}  # ckvision.models.install reads it (a mirror for any download)
)
SWEPT_PROGRAM = "image-classification-onnxruntime-loadgen-py"
# Figures that are definitions or arithmetic, not measurements.
NOT_MEASURED = ("0.1 %", "87.5 %", "7.5 GB", "30.1 GB", "0.5 ms", "99.999%")
FIGURE = re.compile(r"\d+\.\d+ ?(?:samples/s|ms\b|%|x\b)|\d+(?:\.\d+)? ?(?:MB|GB)\b")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def commands(block: str) -> Iterator[str]:
    """Each command of a block: continuation lines joined, comments dropped, && split."""
    for line in block.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            if part.strip() and not part.strip().startswith("#"):
                yield part.strip()


def words(command: str) -> list[str]:
    for key, value in PLACEHOLDERS.items():
        command = command.replace(key, value)
    assert "$" not in command.split("#")[0], f"undefined placeholder in {command!r}"
    return shlex.split(command, comments=True)


def _meta(kind: str, name: str) -> dict[str, Any]:
    path = ROOT / kind / name / ".cm" / "meta.json"
    assert path.is_file(), f"no {kind}:{name} in this repository"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _package_words() -> dict[str, set[str]]:
    out = {}
    for meta_file in sorted((ROOT / "package").glob("*/.cm/meta.json")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        out[meta_file.parents[1].name] = set(meta.get("tags", [])) | set(meta.get("variations", {}))
    return out


def _package_metas() -> dict[str, dict[str, Any]]:
    return {
        f.parents[1].name: json.loads(f.read_text(encoding="utf-8"))
        for f in sorted((ROOT / "package").glob("*/.cm/meta.json"))
    }


def _group(tag: str) -> str:
    return "using" if tag.startswith("using-") else tag.split(".")[0]


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


class Checker:
    """Checks one command; ``select_package`` is given the tags of `ck install package`."""

    def __init__(self, select_package: Callable[[str], object]) -> None:
        self.select_package = select_package
        self.packages = _package_words()

    def check(self, command: str) -> None:
        argv = words(command)
        if re.fullmatch(r"[A-Z_]+=\S+", argv[0]) and len(argv) == 1:
            self._paths(argv[0].split("=", 1)[1])
            return
        for arg in argv:
            self._paths(arg)
        if argv[:3] == ["python", "-m", "ckvision"]:
            self._ckvision(argv[3:])
        elif argv[0] == "ck" and argv[1] in ("run", "benchmark", "build"):
            self._ck_run(argv)
        elif argv[:3] == ["ck", "install", "package"] or (
            argv[:2] == ["ck", "install"] and ":package:" in argv[2]
        ):
            self._ck_install(argv)
        elif argv[0] == "make":
            targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
            assert targets and set(targets) <= _makefile_targets(), f"make targets: {command}"
        elif argv[0].endswith("python") and argv[1].startswith("benchmarks/"):
            script = ROOT / argv[1]
            assert script.is_file(), command
            source = script.read_text(encoding="utf-8")
            for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
                assert f'"{flag}"' in source, f"{argv[1]} has no {flag}"
        else:
            assert any(tuple(argv[: len(k)]) == k for k in OTHER_COMMANDS), (
                f"not a command the README test knows: {command}"
            )

    def _paths(self, arg: str) -> None:
        """A ~/CK-TOOLS/<folder> is the folder CK makes: default variations appended."""
        found = re.search(r"~/CK-TOOLS/([^/\s]+)", arg)
        if not found:
            return
        folder = found.group(1)
        names = []
        for meta_file in (ROOT / "package").glob("*/.cm/meta.json"):
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            default = sorted(
                k for k, v in meta.get("variations", {}).items() if v.get("on_by_default")
            )
            names.append("-".join([meta.get("suggested_path", ""), *default]))
        assert folder in names, f"~/CK-TOOLS/{folder}: CK installs into one of {sorted(names)}"

    def _ckvision(self, argv: list[str]) -> None:
        from ckvision.cli import build_parser

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit:
                raise AssertionError(f"ckvision {argv}: {err.getvalue().strip()}") from None
        if getattr(args, "ck_args", None):  # sweeps pass them to every point's ck benchmark
            self.check(f"ck benchmark program:{SWEPT_PROGRAM} " + " ".join(args.ck_args))
        if args.command == "ck-install":
            self.select_package(args.tags)
        for value in vars(args).values():
            if isinstance(value, str) and value.startswith(("ck ", "python -m ckvision")):
                self.check(value)

    def _ck_run(self, argv: list[str]) -> None:
        kind, _, name = argv[2].removeprefix("ck-mlperf-vision:").partition(":")
        meta = _meta(kind, name)
        if kind != "program":
            assert kind in ("script", "docker"), argv
        deps = meta.get("run_deps", {})
        allowed_env = declared_env_vars() | set(meta.get("run_vars", {}))
        for arg in argv[3:]:
            if arg.startswith("--dep_add_tags."):
                dep, _, tags = arg.removeprefix("--dep_add_tags.").partition("=")
                assert dep in deps, f"{name} has no dependency {dep!r}: {sorted(deps)}"
                wanted = set(deps[dep]["tags"].split(",")) | set(tags.split(","))
                if wanted & {"model", "dataset"}:
                    assert any(wanted <= w for w in self.packages.values()), (
                        f"--dep_add_tags.{dep}={tags}: no package of ours has {sorted(wanted)}"
                    )
            elif arg.startswith("--env."):
                var = arg.removeprefix("--env.").split("=")[0]
                assert var in allowed_env, f"{name} reads no {var}"
            elif arg.startswith("--command="):
                self.check(arg.removeprefix("--command="))
        if {"weights", "images"} <= set(deps):
            self._model_meets_data(argv, deps)

    def _model_meets_data(self, argv: list[str], deps: dict[str, Any]) -> None:
        """The model chosen (by --dep_add_tags.weights) gets the dataset variation its
        contract needs: default variations of the dataset package, as overridden by
        --dep_add_tags.images (one tag per group: side, crop, using, inter)."""
        from ckvision.data.variation import Preprocessing
        from ckvision.models.registry import get_model_spec

        added = {
            dep: tags
            for dep, _, tags in (
                a.removeprefix("--dep_add_tags.").partition("=")
                for a in argv
                if a.startswith("--dep_add_tags.")
            )
        }
        wanted = set(deps["weights"]["tags"].split(",")) | set(added.get("weights", "").split(","))
        wanted.discard("")
        models = {
            str(env["CKVISION_MODEL"])
            for name, meta in _package_metas().items()
            if "CKVISION_MODEL" in (env := meta.get("customize", {}).get("install_env", {}))
            and wanted <= self.packages[name]
        }
        if len(models) != 1:
            if "weights" in added:  # several, or a package that builds any model: not checked
                return
            models = {"efficientnet-lite0"}  # the default: its package sorts first
        model = models.pop()
        need = Preprocessing.for_model(get_model_spec(model).contract).tags()
        images = set(deps["images"]["tags"].split(",")) | set(added.get("images", "").split(","))
        images.discard("")
        for name, meta in _package_metas().items():
            if not images <= self.packages[name] or not meta.get("variations"):
                continue
            have = {k for k, v in meta["variations"].items() if v.get("on_by_default")}
            for tag in images & set(meta["variations"]):
                have = {h for h in have if _group(h) != _group(tag)} | {tag}
            assert set(need) <= have, (
                f"{' '.join(argv[:3])}: model {model} needs dataset variation "
                f"{','.join(need)}, --dep_add_tags.images gives {','.join(sorted(have))}"
            )

    def _ck_install(self, argv: list[str]) -> None:
        tags = next(a.removeprefix("--tags=") for a in argv if a.startswith("--tags="))
        if ":package:" in argv[2]:
            name = argv[2].split(":package:")[1]
            assert set(tags.split(",")) <= self.packages[name], (name, tags)
        else:
            self.select_package(tags)
        for arg in argv:
            if arg.startswith("--env."):
                var = arg.removeprefix("--env.").split("=")[0]
                assert var in PACKAGE_ENV, f"no package reads {var}"


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    """Package tags are checked by ckvision's own checker through the real ck, on a
    CK_REPOS that holds only this checkout."""
    from ckvision.ck.deps import check_package_tags

    repos = tmp_path_factory.mktemp("ck-repos")
    env = dict(os.environ, CK_REPOS=str(repos), CK_TOOLS=str(repos / "tools"))
    ck = str(Path(sys.executable).with_name("ck"))
    subprocess.run(
        [ck, "add", "repo:ck-mlperf-vision", f"--path={ROOT}", "--quiet"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield Checker(check_package_tags)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def readme_commands() -> list[str]:
    return [c for b in bash_blocks(README.read_text(encoding="utf-8")) for c in commands(b)]


@pytest.mark.timeout(120)
def test_every_readme_command_is_checked(checker: Checker) -> None:
    cmds = readme_commands()
    assert len(cmds) > 40
    failures = []
    for command in cmds:
        try:
            checker.check(command)
        except Exception as err:  # noqa: BLE001 - collect them all
            failures.append(f"{command}\n    -> {(str(err) or repr(err)).splitlines()[0]}")
    assert not failures, "\n".join(failures)


NAMES = ("ck install package", "ck benchmark --record")  # named in prose, not commands


def inline_commands(text: str) -> list[str]:
    """Commands in `code spans` of the prose, as complete commands (no elisions)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    out = []
    for span in re.findall(r"`([^`]+)`", text):
        if "\n\n" in span:
            continue
        span = " ".join(span.split())
        if any(mark in span for mark in ("...", "<", "\u2026", "*", "[")) or span in NAMES:
            continue
        if span.startswith("ckvision "):
            span = "python -m " + span
        if span.startswith(("--dep_add_tags.", "--ck-arg=", "--env.CK_")):
            span = f"ck run program:{SWEPT_PROGRAM} " + span.removeprefix("--ck-arg=")
        elif span.startswith("--env."):
            span = "ck install package --tags=model,onnx,resnet50 " + span
        if re.match(r"(python -m ckvision |make |ck (run|benchmark) \S+:|ck install )", span):
            out.append(span)
    return out


@pytest.mark.timeout(120)
def test_every_command_in_the_prose_is_checked(checker: Checker) -> None:
    from ckvision.cli import build_parser

    subcommands = set()
    for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
        subcommands |= set(getattr(action, "choices", {}) or {})
    cmds = inline_commands(README.read_text(encoding="utf-8"))
    assert len(cmds) > 20
    failures = []
    for command in cmds:
        try:
            argv = command.split()
            if argv[:3] == ["python", "-m", "ckvision"] and len(argv) == 4:
                assert argv[3] in subcommands, f"no subcommand {argv[3]}"  # a name, in prose
            else:
                checker.check(command)
        except Exception as err:  # noqa: BLE001 - collect them all
            failures.append(f"{command}\n    -> {(str(err) or repr(err)).splitlines()[0]}")
    assert not failures, "\n".join(failures)


OLD_WRONG_EXAMPLES = [
    # the dataset's install folder has the variation tags in its name
    "python -m ckvision run --model ~/CK-TOOLS/model-onnx-efficientnet-lite0-export/model.onnx "
    "--dataset ~/CK-TOOLS/dataset-imagenet-preprocessed-sample/data --output-dir /tmp/run",
    # a value starting with -- needs --ck-arg=...
    "python -m ckvision sweep batch --batches 1..32 --ck-arg --dep_add_tags.weights=resnet50",
    # no ONNX model package is fp16
    "ck run program:image-classification-onnxruntime-loadgen-py --dep_add_tags.weights=fp16",
    "ck run program:image-classification-onnxruntime-loadgen-py --dep_add_tags.model=resnet50",
    # resnet50 needs the opencv/area variation, the default dataset is pillow/linear
    "ck run program:image-classification-onnxruntime-loadgen-py --dep_add_tags.weights=resnet50",
    "ck run program:image-classification-onnxruntime-loadgen-py --env.CK_BATCHSIZE=8",
    "ck install package --tags=dataset,imagenet,preprocessed,first.501 --quiet",
    "ck install package --tags=dataset,imagenet,preprocessed --quiet",  # two packages
    "ck install package --tags=model,onnx,resnet50 --env.IMAGENET_DIR=/x --quiet",
    "ck run program:image-classification-triton-loadgen-py2 --quiet",
    "make everything",
    "curl https://example.org/install.sh",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", OLD_WRONG_EXAMPLES)
def test_the_checker_refuses_the_old_wrong_examples(checker: Checker, command: str) -> None:
    with pytest.raises(Exception):  # noqa: B017,PT011 - AssertionError or ConfigError
        checker.check(command)


@pytest.mark.timeout(60)
def test_the_figures_table_is_what_its_command_prints_on_experiment() -> None:
    from ckvision.cli import main

    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- figures: (.*?) -->\n```\n(.*?)```\n<!-- /figures -->", text, re.S)
    assert blocks, "the README shows its figures table"
    for command, shown in blocks:
        assert f"```bash\n{command}\n```" in text, "the command is shown, not only in a comment"
        argv = words(command)
        assert argv[:4] == ["python", "-m", "ckvision", "results"]
        entries = sorted(str(p) + "/" for a in argv[4:] for p in ROOT.glob(a.rstrip("/")))
        assert entries, command
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["results", *entries]) in (0, None)
        assert shown.strip("\n") == out.getvalue().strip("\n")
        for figure in re.findall(r"(?:accuracy|top5)=(\d+\.\d+)%", text):
            assert figure in shown, f"{figure}% is in none of the entries shown"


@pytest.mark.timeout(30)
def test_no_measured_figure_outside_the_entries_table() -> None:
    text = README.read_text(encoding="utf-8")
    text = re.sub(r"<!-- figures:.*?<!-- /figures -->", "", text, flags=re.S)
    text = re.sub(r"<!-- settings-table:.*?<!-- /settings-table -->", "", text, flags=re.S)
    text = re.sub(r"(?:accuracy|top5)=\d+\.\d+%", "", text)  # checked against the table above
    for paragraph in text.split("\n\n"):
        if "experiment/" in paragraph:
            continue
        for figure in FIGURE.findall(paragraph):
            assert figure in NOT_MEASURED, f"{figure!r} comes from no entry in experiment/"


@pytest.mark.timeout(30)
def test_contents_links_point_to_headings_and_words_that_were_wrong_are_gone() -> None:
    text = README.read_text(encoding="utf-8")

    def anchor(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {anchor(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) > 15
    assert set(links) <= anchors, sorted(set(links) - anchors)
    assert "example.org" not in text
    assert "3.10" not in text
    for line in text.splitlines():  # the TensorRT base image is not pinned (digest of zeros)
        if "nvcr.io/nvidia/tensorrt" in line and "|" in line:
            assert "not pinned" in line
