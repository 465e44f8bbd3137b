"""Every command of the docs runs: the ```bash blocks of README.md, docs/*.md and bundles/*/docs/README.md.

Each command is classified and run in a temporary copy of the repository (so that no output lands in the
clone), with tiny data and tiny nets:

- ``python -m monai.bundle <command> ...``: in this process, through ``fire`` as ``python -m monai.bundle``
  parses it, with :data:`COMMON` and the bundle's :data:`TINY` overrides merged in; a ``--dataset_dir`` that
  does not exist (``/data/...`` in the docs) becomes the bundle's tiny demo dataset. A variant (a config
  file other than train/evaluate/inference/multi_gpu_train.json) runs in a ``--bundle_root`` of its own, so
  its inference finds its own checkpoint; a training other than the first in a bundle folder writes into
  folders of its own, so that each trains from scratch while evaluation, inference and export find the
  first one's ``models/model.pt``. Commands that differ only in their ``--key value`` overrides run once;
  the overrides of the others must still be ids of the config (or of ``--tracking mlflow``).
- ``torchrun ... -m monai.bundle run ...``: all of them in one ``torchrun --nnodes 1`` launch on 127.0.0.1
  (one process group, 2 CPU processes at most, gloo), each with the overrides above.
- ``monai-seg ...``: ``monai_seg.cli.main`` in this process, the demo generators at their tiny sizes
  (``monai-seg calibrate bundles/<name>`` with the bundle's tiny overrides).
- ``python -m monai_seg.experiments ...`` (minutes even in quick mode): its command line is parsed here, and
  ``tests/test_experiments.py`` runs every experiment (:data:`TESTED_ELSEWHERE`).
- ``python -m monai_seg.<module> ...``: the module as ``__main__`` in this process (with the bundle's tiny
  net when it is given a bundle's ``--config_file``); ``python -c``: exec'd.
- ``tensorboard`` / ``mlflow ui``: servers, checked with ``--help``.
- the README's set-up commands (and their parts): run by ``.ci/run`` (checked by grepping it);
  ``python -m pytest <paths>``: the paths exist (the full suite is the README's test command).
- ``echo TEXT > FILE``: writes the file (e.g. a config of one's own to merge on top of a bundle's).
- ``VAR=value`` and ``export VAR=value``: shell variables for the rest of the block.

Anything else fails :func:`test_every_doc_command_is_classified` with a hint for the doc's author.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fire
import pytest
import torch
from monai.bundle import ConfigParser
from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

import monai_seg.cli
import monai_seg.data
from tests.bundle_utils import ROLE_FILES

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = sorted(REPO.glob("bundles/*/docs/README.md")) + [REPO / "README.md"] + sorted(REPO.glob("docs/*.md"))
"""Bundle READMEs first: their trainings give the checkpoints that the other pages' commands use."""

COMMON = {"epochs": 1, "num_workers": 0}
"""Overrides of every bundle command."""

TINY: dict[str, dict[str, dict]] = {
    "nerve_ultrasound_segmentation": {
        "demo": {"num_subjects": 4, "images_per_subject": 4, "num_test": 3},
        "override": {"batch_size": 4, "network_def#channels": [16, 32, 64, 128, 256]},
    },
    "skin_lesion_segmentation": {
        "demo": {"num_train": 4, "num_val": 2, "num_test": 2},
        "override": {"batch_size": 2, "spatial_size": [32, 32], "network_def#channels": [4, 8, 16, 32, 64]},
    },
    "retina_vessel_segmentation": {
        "demo": {"num_training": 4, "num_test": 2, "size": (112, 96)},  # 2 validation images: one per DDP rank
        "override": {"batch_size": 2, "patches_per_image": 2, "patch_size": [48, 48], "val_fraction": 0.5,
                     "network_def#channels": [4, 8, 16, 32, 64]},
    },
    "xray_multiclass_segmentation": {
        "demo": {"num_train": 4, "num_val": 2, "num_test": 2, "size": (40, 32)},
        "override": {"batch_size": 2, "spatial_size": [32, 32], "network_def#features": [4, 4, 8, 16, 32, 4]},
    },
    "brats_mri_uncertainty": {
        "demo": {"num_cases": 3, "shape": (48, 48, 16)},
        "override": {"batch_size": 16, "spatial_size": [32, 32], "num_samples": 3, "sample_batch": 3,
                     "network_def#channels": [8, 16, 32], "network_def#blocks": [1, 1, 1]},
        "resunet3d.json": {"roi_size": [32, 32, 16], "batch_size": 1},
    },
}
"""Per bundle: demo-data sizes (arguments of ``make_demo(<layout>, ...)``), overrides, and overrides per variant file."""

TESTED_ELSEWHERE = {"monai_seg.experiments": ("tests/test_experiments.py", "monai_seg.experiments.cli.parse_args")}
"""Modules whose commands take minutes even in their quick mode -> (the test that runs each of their commands,
their argument parser). The test must name the command's first argument (e.g. the experiment); here only the
command line is parsed."""

SERVERS = ("tensorboard", "mlflow")
"""Long-running servers: only their ``--help`` is run."""

_BUNDLE_FILE = re.compile(r"bundles/([^/]+)/configs/([\w.-]+\.json)$")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_HINT = (
    "Doc commands must be runnable by tests/test_doc_commands.py: use `python -m monai.bundle ...` with "
    "bundles/<name>/configs paths, `torchrun ... -m monai.bundle run ...`, `monai-seg ...`, `python -m "
    "monai_seg.<module> ...`, `python -c ...`, or the README's set-up commands; show anything else (a CUDA "
    "wheel, a server on another machine) in prose or in a ```text block, or teach the test to run it."
)


@dataclass
class DocCommand:
    """One command of a doc: where it is, its words after variable expansion, and the shell variables set."""

    file: str
    line: int
    text: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _expand(text: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_doc(path: Path) -> list[DocCommand]:
    """The commands of the ```bash blocks of ``path``: comments dropped, ``\\`` continuations joined,
    ``VAR=value`` / ``export VAR=value`` applied to the following lines, ``&&`` chains split."""
    lines = path.read_text().splitlines()
    relative = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    commands, fence, variables, exported = [], None, {}, {}
    number = 0
    while number < len(lines):
        start, line = number + 1, lines[number]
        number += 1
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:].strip() or "text"
            if fence in ("bash", "sh", "shell"):
                variables, exported = {}, {}
            continue
        if fence not in ("bash", "sh", "shell"):
            continue
        while line.rstrip().endswith("\\") and number < len(lines):
            line, number = line.rstrip()[:-1] + " " + lines[number].strip(), number + 1
        words = shlex.split(_expand(line, variables), comments=True)
        chain: list[list[str]] = [[]]
        for word in words:
            if word == "&&":
                chain.append([])
            else:
                chain[-1].append(word)
        for argv in filter(None, chain):
            if argv[0] == "export" or all(_ASSIGNMENT.match(w) for w in argv):
                for word in argv[argv[0] == "export":]:
                    name, value = word.split("=", 1)
                    variables[name] = value
                    if argv[0] == "export":
                        exported[name] = value
                continue
            env = dict(exported)
            while _ASSIGNMENT.match(argv[0]):  # VAR=value command ...
                name, value = argv.pop(0).split("=", 1)
                env[name] = value
            commands.append(DocCommand(relative, start, shlex.join(argv), argv, env))
    return commands


def ci_covered() -> set[str]:
    """The commands that ``.ci/run`` runs: its own simple lines (``python3 -m venv .venv``), and the README
    lines matched by its ``grep '^...' README.md`` with their ``&&`` parts."""
    script = (REPO / ".ci" / "run").read_text()
    patterns = re.findall(r"grep -m 1 '(\^[^']+)' README.md", script)
    covered = {shlex.join(shlex.split(line)) for line in script.splitlines() if re.match(r"^[\w.][\w./ -]*$", line)}
    for command in parse_doc(REPO / "README.md"):
        line = (REPO / "README.md").read_text().splitlines()[command.line - 1]
        if any(re.match(p, line) for p in patterns):
            covered.add(command.text)
    return covered


# ----------------------------------------------------------------------------------------------------
# classification
# ----------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """How a doc command is run: ``kind``, a key (commands of equal keys run once) and what runs it."""

    kind: str
    key: tuple
    bundle: str | None = None
    args: list[str] = field(default_factory=list)


def _split_flags(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional words and ``--key value`` / ``--key=value`` flags of a fire command line."""
    positional, flags, i = [], {}, 0
    while i < len(args):
        word = args[i]
        if word.startswith("--"):
            if "=" in word:
                key, value = word[2:].split("=", 1)
            else:
                key, value, i = word[2:], args[i + 1] if i + 1 < len(args) else "True", i + 1
            flags[key] = value
        else:
            positional.append(word)
        i += 1
    return positional, flags


def _config_files(value: str) -> list[str]:
    files = ast.literal_eval(value) if value.strip().startswith("[") else [value]
    return [str(f) for f in files]


def _bundle_plan(kind: str, args: list[str]) -> Plan:
    positional, flags = _split_flags(args)
    files = _config_files(flags.get("config_file", flags.get("meta_file", "")))
    bundles = {m.group(1) for m in map(_BUNDLE_FILE.search, files) if m}
    if len(bundles) != 1 or not (REPO / "bundles" / next(iter(bundles))).is_dir():
        raise ValueError(f"its config files {files} are not those of one bundle of this repository (bundles/<name>/"
                         "configs/*.json, plus files of your own written by an earlier command)")
    bundle = bundles.pop()
    if bundle not in TINY:
        raise ValueError(f"bundle {bundle} has no tiny overrides: add it to TINY in tests/test_doc_commands.py")
    return Plan(kind, (kind, tuple(positional), tuple(files)), bundle, args)


def classify(command: DocCommand, covered: set[str]) -> Plan:
    """The :class:`Plan` of a command; ValueError (with what is wrong) when it cannot be run."""
    argv = command.argv
    python = argv[0] in ("python", "python3")
    if command.text in covered:
        return Plan("ci", (command.text,))
    if python and argv[1:3] == ["-m", "monai.bundle"]:
        return _bundle_plan("bundle", argv[3:])
    if argv[0] == "torchrun" or (python and argv[1:3] == ["-m", "torch.distributed.run"]):
        program = argv.index("-m") if "-m" in argv[1:] and argv[0] == "torchrun" else argv.index("-m", 3)
        if argv[program + 1 : program + 3] != ["monai.bundle", "run"]:
            raise ValueError("torchrun runs only `-m monai.bundle run ...` here")
        return _bundle_plan("torchrun", argv[program + 2 :])  # its launch options: see Runner.launch_torchrun
    if argv[0] == "monai-seg":
        return Plan("cli", tuple(argv), args=argv[1:])
    if python and argv[1] == "-m" and argv[2] in TESTED_ELSEWHERE:
        return Plan("tested", tuple(argv), args=argv[2:])
    if python and argv[1] == "-m" and argv[2].startswith("monai_seg."):
        flags = _split_flags(argv[3:])[1]
        bundle = _bundle_plan("module", argv[3:]).bundle if "config_file" in flags else None
        return Plan("module", tuple(argv), bundle, argv[2:])
    if python and argv[1] == "-c":
        return Plan("exec", tuple(argv), args=argv[2:3])
    if python and argv[1:3] == ["-m", "pytest"]:
        paths = [a.split("::")[0] for a in argv[3:] if not a.startswith("-")]
        missing = [p for p in paths if not (REPO / p).exists()]
        if missing:
            raise ValueError(f"pytest paths {missing} do not exist")
        return Plan("ci", (command.text,))
    if argv[0] == "echo" and len(argv) == 4 and argv[2] == ">":
        return Plan("write", tuple(argv), args=[argv[3], argv[1]])
    if argv[0] in SERVERS:
        return Plan("help", tuple(argv), args=[w for w in argv[:2] if not w.startswith("-")] + ["--help"])
    raise ValueError("it is not a command this test knows how to run")


# ----------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------


def _tiny_overrides(plan: Plan) -> dict:
    tiny = TINY[plan.bundle]
    files = [f.rsplit("/", 1)[-1] for f in _config_files(_split_flags(plan.args)[1].get("config_file", "[]"))]
    return {**COMMON, **tiny["override"], **{k: v for f in files for k, v in tiny.get(f, {}).items()}}


def _check_overrides(plan: Plan, flags: dict[str, str], function: Callable) -> None:
    """Each doc override (a flag that is no argument of the bundle function) names an id of the config."""
    if "config_file" not in flags:
        return
    parser = ConfigParser()
    parser.read_config(_config_files(flags["config_file"]))
    tracking = flags.get("tracking")
    if tracking:  # `--tracking mlflow` (or a settings file) adds its own ids, e.g. experiment_name
        settings = DEFAULT_MLFLOW_SETTINGS if tracking == "mlflow" else ConfigParser.load_config_file(tracking)
        parser.update(settings.get("configs", {}))
    parameters = inspect.signature(function).parameters
    for key in flags:
        parent = key.rsplit("#", 1)[0]
        if key not in parameters and key not in parser and not ("#" in key and parent in parser):
            raise ValueError(f"the override --{key} is not an id of {flags['config_file']}")


class Runner:
    """Runs the planned commands in ``root`` (a copy of the repository) and collects failures."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.failures: list[str] = []
        self.trained: set[str] = set()
        self.runs = 0
        self.torchrun: list[tuple[DocCommand, list[str]]] = []
        self.bundle_functions = vars(__import__("monai.bundle.__main__", fromlist=["run"]))

    def fail(self, command: DocCommand, error: BaseException | str) -> None:
        tail = error if isinstance(error, str) else "".join(traceback.format_exception(error)[-6:])
        self.failures.append(f"{command.where()}\n    {tail.strip()[-1500:]}".replace("\n", "\n    "))

    def demo_dir(self, bundle: str) -> str:
        return f"bundles/{bundle}/demo_data"

    def bundle_args(self, command: DocCommand, plan: Plan, fresh: bool) -> list[str]:
        """The doc's arguments with the tiny overrides merged in."""
        positional, flags = _split_flags(plan.args)
        function = self.bundle_functions[positional[0]]
        _check_overrides(plan, flags, function)
        if "dataset_dir" in flags and not (self.root / flags["dataset_dir"]).exists():
            flags["dataset_dir"] = self.demo_dir(plan.bundle)
        files = [f.rsplit("/", 1)[-1] for f in _config_files(flags.get("config_file", "[]"))]
        variants = sorted(Path(f).stem for f in files if f not in ROLE_FILES)
        if variants:  # a variant trains and infers in a bundle folder of its own
            flags.setdefault("bundle_root", f"variants/{plan.bundle}-{'-'.join(variants)}")
            flags.setdefault("dataset_dir", self.demo_dir(plan.bundle))
        workspace = flags.get("bundle_root", plan.bundle)
        if positional[0] == "run":
            flags.update({k: json.dumps(v) for k, v in _tiny_overrides(plan).items()})
            if "train.json" in files and "evaluate.json" not in files:  # a training
                if fresh or workspace in self.trained:  # not the first: from scratch in folders of its own
                    self.runs += 1
                    for key, folder in (("ckpt_dir", "models"), ("output_dir", "eval")):
                        flags.setdefault(key, f"runs/{self.runs}/{folder}")
                self.trained.add(workspace)
        elif positional[0] in ("verify_net_in_out", "ckpt_export"):
            flags.update({k: json.dumps(v) for k, v in TINY[plan.bundle]["override"].items() if "#" in k})
        return positional + [f"--{k}={v}" for k, v in flags.items()]

    def run(self, command: DocCommand, plan: Plan) -> None:
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(self.root)
                for name, value in command.env.items():
                    patch.setenv(name, value)
                getattr(self, f"run_{plan.kind}")(command, plan, patch)
        except (Exception, SystemExit) as error:  # noqa: B902 - argparse/fire exit on bad input
            if not (isinstance(error, SystemExit) and error.code in (0, None)):
                self.fail(command, error)

    def run_ci(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        """Run by .ci/run (checked in :func:`test_ci_runs_the_readme_set_up_commands`)."""

    def run_bundle(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        fire.Fire(self.bundle_functions, command=self.bundle_args(command, plan, fresh=False), name="monai.bundle")

    def run_torchrun(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        self.torchrun.append((command, self.bundle_args(command, plan, fresh=True)))

    def run_cli(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        tiny = {monai_seg.cli.bundle_info(REPO / "bundles" / bundle).layout: TINY[bundle]["demo"] for bundle in TINY}
        make = monai_seg.data.make_demo

        def make_tiny(layout: str, *args: Any, **kwargs: Any) -> str:
            return make(layout, *args, **tiny[layout], **kwargs)

        patch.setattr(monai_seg.data, "make_demo", make_tiny)
        args = list(plan.args)
        if args[0] == "calibrate":  # the bundle's tiny net and sizes, as its training had
            tiny_ids = {**COMMON, **TINY[Path(args[1]).name]["override"]}
            args += ["--set", *(f"{k}={json.dumps(v)}" for k, v in tiny_ids.items())]
        monai_seg.cli.main(args)

    def run_module(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        """``python -m monai_seg.<module>``; on a bundle's configs with the bundle's tiny net."""
        net = {k: v for k, v in TINY[plan.bundle]["override"].items() if "#" in k} if plan.bundle else {}
        patch.setattr(sys, "argv", plan.args + [f"--{k}={json.dumps(v)}" for k, v in net.items()])
        runpy.run_module(plan.args[0], run_name="__main__", alter_sys=True)

    def run_exec(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        exec(compile(plan.args[0], command.where(), "exec"), {"__name__": "__main__"})

    def run_tested(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        test, parser = TESTED_ELSEWHERE[plan.args[0]]
        parser_module, parser_name = parser.rsplit(".", 1)
        getattr(__import__(parser_module, fromlist=[parser_name]), parser_name)(plan.args[1:])
        if not (REPO / test).is_file() or f'"{plan.args[1]}"' not in (REPO / test).read_text():
            raise ValueError(f"{test} does not run {plan.args[1]!r}: add it there")

    def run_write(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        Path(plan.args[0]).write_text(plan.args[1] + "\n")

    def run_help(self, command: DocCommand, plan: Plan, patch: pytest.MonkeyPatch) -> None:
        if shutil.which(plan.args[0]) is None:
            raise ValueError(f"{plan.args[0]} is not installed")
        result = subprocess.run(plan.args, capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise ValueError(f"`{' '.join(plan.args)}` exited {result.returncode}: {result.stderr[-1000:]}")

    def launch_torchrun(self) -> None:
        """All torchrun commands in one 2-process launch on this machine."""
        if not self.torchrun:
            return
        jobs = self.root / "torchrun_jobs.json"
        jobs.write_text(json.dumps([args for _, args in self.torchrun]))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                  "--master_addr=127.0.0.1", f"--master_port={port}", __file__,
                  str(jobs)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        result = subprocess.run(launch, cwd=self.root, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode:
            failed = sorted({int(k) for k in re.findall(r"DOC COMMAND (\d+) FAILED", result.stdout + result.stderr)})
            for index in failed or range(len(self.torchrun)):
                self.fail(self.torchrun[index][0], (result.stdout + result.stderr)[-1500:])


def _ignored(folder: str, names: list[str]) -> set[str]:
    """Entries of ``folder`` left out of the copy: git's ignored files (outputs, demo data) and virtual envs."""
    paths = [os.path.normpath(os.path.join(os.path.relpath(folder, REPO), name)) for name in names]
    try:
        result = subprocess.run(["git", "check-ignore", "--stdin"], input="\n".join(paths), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        ignored = set(result.stdout.splitlines())
    except OSError:  # no git: the .gitignore entries that matter here
        ignored = {p for p in paths if re.search(r"(^|/)(__pycache__|demo_data|models|eval|outputs|runs)$", p)}
    return {n for n, p in zip(names, paths) if p in ignored or n == ".git" or n.startswith(".venv")}


def _copy_repository(target: Path) -> Path:
    return Path(shutil.copytree(REPO, target, ignore=_ignored))


def all_commands() -> Iterator[DocCommand]:
    for path in DOC_FILES:
        yield from parse_doc(path)


# ----------------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------------


def test_parse_doc_handles_comments_continuations_variables_and_chains(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```bash\nB=bundles/x/configs\nARGS=\"--meta_file $B/metadata.json\"\nexport OMP_NUM_THREADS=1  # fast\n"
        "# a comment\npython -m monai.bundle run \\\n    --config_file \"['$B/a.json','$B/b.json']\" $ARGS\n"
        "pip install a && OMP_NUM_THREADS=2 monai-seg bundles\n```\n\n```text\nnot a command\n```\n"
    )
    commands = parse_doc(doc)
    assert [c.argv for c in commands] == [
        ["python", "-m", "monai.bundle", "run", "--config_file", "['bundles/x/configs/a.json','bundles/x/configs/b.json']",
         "--meta_file", "bundles/x/configs/metadata.json"],
        ["pip", "install", "a"],
        ["monai-seg", "bundles"],
    ]
    assert [c.line for c in commands] == [6, 8, 8]
    assert commands[0].env == {"OMP_NUM_THREADS": "1"} and commands[2].env == {"OMP_NUM_THREADS": "2"}


def test_ci_runs_the_readme_set_up_commands():
    covered = ci_covered()
    readme = {c.text for c in parse_doc(REPO / "README.md")}
    assert any(c.startswith("pip install torch") for c in readme) and "python -m pytest -q" in readme
    assert "pip install -e '.[test]'" in readme  # the test command installs the test extras itself
    assert readme <= covered, f"README commands that .ci/run does not run: {sorted(readme - covered)}"
    assert {"python3 -m venv .venv", ". .venv/bin/activate"} <= covered  # docs/install.md's fresh machine


def test_every_doc_command_is_classified():
    covered = ci_covered()
    problems = []
    for command in all_commands():
        try:
            classify(command, covered)
        except (ValueError, SyntaxError, IndexError) as error:
            problems.append(f"{command.where()}\n    cannot be run: {error}. {_HINT}")
    assert not problems, "\n".join(problems)


def test_doc_commands_run(tmp_path):
    """Run every classified doc command once, in doc order (the bundle READMEs first)."""
    covered = ci_covered()
    root = _copy_repository(tmp_path / "repo")
    for bundle, tiny in TINY.items():
        layout = monai_seg.cli.bundle_info(root / "bundles" / bundle).layout
        monai_seg.data.make_demo(layout, root / "bundles" / bundle / "demo_data", **tiny["demo"])
    runner, seen = Runner(root), set()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for command in all_commands():
            try:
                plan = classify(command, covered)
            except (ValueError, SyntaxError, IndexError):
                continue  # reported by test_every_doc_command_is_classified
            if plan.key in seen:
                if plan.kind in ("bundle", "torchrun"):
                    try:  # not run again, but its overrides must still exist
                        positional, flags = _split_flags(plan.args)
                        _check_overrides(plan, flags, runner.bundle_functions[positional[0]])
                    except ValueError as error:
                        runner.fail(command, str(error))
                continue
            seen.add(plan.key)
            runner.run(command, plan)
        runner.launch_torchrun()
    finally:
        torch.set_num_threads(threads)
    assert not runner.failures, f"{len(runner.failures)} doc commands failed:\n" + "\n".join(runner.failures)


def _torchrun_jobs(jobs_file: str) -> None:
    """In each torchrun process: the ``monai.bundle`` command lines of ``jobs_file``, one after the other, in one
    process group (a gloo group re-created after ``destroy_process_group`` can hang, so the configs' ``finalize``
    leaves it alone here)."""
    torch.set_num_threads(1)
    functions = vars(__import__("monai.bundle.__main__", fromlist=["run"]))
    dist = torch.distributed
    dist.init_process_group(backend="gloo")
    destroy, dist.destroy_process_group = dist.destroy_process_group, lambda *args, **kwargs: None
    for index, args in enumerate(json.loads(Path(jobs_file).read_text())):
        try:
            fire.Fire(functions, command=args, name="monai.bundle")
            dist.barrier()
        except BaseException:
            traceback.print_exc()
            print(f"DOC COMMAND {index} FAILED", flush=True)
            sys.exit(1)
    destroy()


if __name__ == "__main__":
    _torchrun_jobs(sys.argv[1])
