"""The machinery of the experiments: bundles driven in-process through MONAI's bundle API, one folder
per run with an atomically written ``result.json`` (a finished run is never repeated), and the results
table (CSV + Markdown).

A run is a function of its folder that returns a flat dict of numbers; :meth:`RunStore.run` calls it
only when ``<output_dir>/<run_id>/result.json`` is missing. Inside a run the bundles' own resumption
applies: training continues from ``checkpoint_latest.pt`` of an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import create_workflow

from monai_seg.utils import atomic_write_csv, atomic_write_text

__all__ = ["BUNDLES_DIR", "Bundle", "RunStore", "markdown_table", "write_table", "format_value"]

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
"""The repository's bundles, the default of ``--bundle``."""

RESULT_FILE = "result.json"
SPEC_FILE = "spec.json"


class Bundle:
    """A bundle folder whose configs are merged and run in this process with ``monai.bundle``.

    Args:
        root: the bundle folder (holding ``configs/``); it becomes the configs' ``bundle_root``.
        verbose: apply the bundle's ``configs/logging.conf`` (per-epoch metrics on the console);
            otherwise the runs log errors only (no input summaries, per-epoch metrics or MONAI
            deprecation notices) and only the trainers' progress bars show.

    Raises:
        ValueError: when ``root`` has no ``configs/metadata.json``.
    """

    def __init__(self, root: str | os.PathLike, verbose: bool = False) -> None:
        self.root = Path(root)
        if not (self.root / "configs" / "metadata.json").is_file():
            raise ValueError(f"{self.root} is not a bundle folder: configs/metadata.json is missing.")
        self.verbose = verbose

    @property
    def layout(self) -> str:
        """The dataset layout of the bundle: the ``layout`` id of ``configs/train.json``.

        Raises:
            ValueError: when ``configs/train.json`` has no ``layout``.
        """
        layout = json.loads((self.root / "configs" / "train.json").read_text()).get("layout")
        if layout is None:
            raise ValueError(f"{self.root}/configs/train.json has no 'layout' id.")
        return layout

    def digest(self) -> str:
        """A short SHA-256 of every ``configs/*.json`` (names and contents): it changes when any config
        is edited, so that runs stored under an earlier version of the configs are not taken for new ones."""
        sha = hashlib.sha256()
        for f in sorted((self.root / "configs").glob("*.json")):
            sha.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        return sha.hexdigest()[:16]

    def config_files(self, names: Sequence[str]) -> list[str]:
        """Paths of ``configs/<name>`` for each name, in merge order.

        Raises:
            ValueError: naming a missing config file.
        """
        files = [self.root / "configs" / name for name in names]
        for f in files:
            if not f.is_file():
                raise ValueError(f"bundle config {f} does not exist.")
        return [str(f) for f in files]

    def run(self, names: Sequence[str], **override: Any) -> Any:
        """``python -m monai.bundle run --config_file [names] --<key> <value> ...``, in this process.

        Args:
            names: config files of ``configs/``, merged in order (e.g. ``["train.json", "unet.json"]``).
            override: config ids and their values (``epochs=2``, ``**{"network_def#channels": [...]}``). A
                ``None`` value sets the id to None (passed on as the expression ``"$None"``: MONAI's
                ``create_workflow`` drops None-valued arguments, which would leave the config's own value).

        Returns:
            the finalized ``ConfigWorkflow``; its ``parser`` still holds the parsed objects.
        """
        files = self.config_files(names)
        quiet = logging.root.manager.disable
        if not self.verbose:
            logging.disable(logging.WARNING)  # includes MONAI's "logging file is set to False" warning of every run
        try:
            with warnings.catch_warnings():
                # the user chose the bundle (``__main__`` says once that its configs run as code), not one notice a run
                warnings.filterwarnings("ignore", message="parsing config_file")
                if not self.verbose:
                    warnings.filterwarnings("ignore", category=FutureWarning)  # MONAI's deprecation notices, every run
                workflow = create_workflow(
                    config_file=files,
                    meta_file=str(self.root / "configs" / "metadata.json"),
                    logging_file=str(self.root / "configs" / "logging.conf") if self.verbose else False,
                    bundle_root=str(self.root),
                    **{key: "$None" if value is None else value for key, value in override.items()},
                )
                workflow.run()
                workflow.finalize()
        finally:
            logging.disable(quiet)
        return workflow


class RunStore:
    """One folder per run under ``output_dir``; a run whose ``result.json`` exists is not run again.

    Args:
        output_dir: the experiment's folder.
        total: number of runs of the experiment, for the progress lines.
        echo: prints one progress line per run.
        common_spec: added to every run's ``spec``, e.g. ``{"bundle_configs": Bundle.digest()}`` so that
            editing a config makes the stored runs "other settings" instead of silently reused.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        total: int = 0,
        echo: Callable[[str], None] = print,
        common_spec: Mapping[str, Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.total = total
        self.echo = echo
        self.common_spec = dict(common_spec or {})
        self.executed: list[str] = []
        self._seen = 0

    def run(self, run_id: str, fn: Callable[[Path], Mapping[str, Any]], spec: Mapping[str, Any]) -> dict[str, Any]:
        """The result of ``fn(<output_dir>/<run_id>)``, computed only if not stored yet.

        Args:
            run_id: the run's folder name.
            fn: does the run in the folder it is given (created here) and returns its result,
                a JSON-serialisable flat dict.
            spec: what defines the run (its config overrides), JSON-serialisable; stored in
                ``spec.json`` so that a rerun with other settings does not reuse the folder.

        Returns:
            the stored or new result.

        Raises:
            ValueError: when the folder holds a run of another ``spec``, or a stored file is not
                readable JSON (naming the file).
        """
        self._seen += 1
        prefix = f"[{self._seen}/{self.total}] {run_id}" if self.total else run_id
        folder = self.output_dir / run_id
        path = folder / RESULT_FILE
        spec_text = json.dumps({**spec, **self.common_spec}, indent=2, sort_keys=True, default=str) + "\n"
        if (folder / SPEC_FILE).is_file() and (folder / SPEC_FILE).read_text() != spec_text:
            raise ValueError(f"{folder} holds a run with other settings ({folder / SPEC_FILE}); "
                             "choose another --output_dir or delete that folder.")
        if path.is_file():
            try:
                result = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON ({error}); delete it to redo the run.") from None
            self.echo(f"{prefix}: finished earlier, skipped")
            return result
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / SPEC_FILE, spec_text)
        start = time.perf_counter()
        result = dict(fn(folder))
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        self.executed.append(run_id)
        shown = ", ".join(f"{k} {format_value(v)}" for k, v in result.items())
        self.echo(f"{prefix}: {shown} ({time.perf_counter() - start:.1f} s)")
        return result


def format_value(value: Any) -> str:
    """Table text of a value: floats with 3 decimals (below 100) or as short as exact, NaN/None as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of ``rows`` (one dict a row, the keys are the columns), 3 decimals."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike, name: str = "results") -> str:
    """Write ``rows`` as ``<name>.csv`` (full precision) and ``<name>.md`` (3 decimals), atomically.

    Args:
        rows: one dict a row, all with the same keys (the columns, in order).
        output_dir: folder of the two files.
        name: file stem.

    Returns:
        the Markdown table.
    """
    columns = list(rows[0])
    markdown = markdown_table(rows)
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_csv(Path(output_dir) / f"{name}.csv", columns, ([row[c] for c in columns] for row in rows))
    atomic_write_text(Path(output_dir) / f"{name}.md", markdown)
    return markdown
