"""Resumable training for MONAI's engines: atomic checkpoints, a loader that resumes from the latest one
(or, on a fresh start, keeps earlier results from being overwritten) and an early-stopping handler with a state.

A bundle saves ``{"trainer", "network", "optimizer", ...}`` after every epoch with
:class:`AtomicCheckpointSaver` into a fixed ``checkpoint_latest.pt`` and attaches
:class:`ResumeCheckpointLoader` to the trainer: the same command, run again after a kill, continues from
the last completed epoch.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.handlers import CheckpointLoader, CheckpointSaver, EarlyStopHandler
from monai.utils import min_version, optional_import, str2bool

from monai_seg.utils import check_outputs

Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")
Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
DiskSaver, _ = optional_import("ignite.handlers", "0.4.11", min_version, "DiskSaver")

__all__ = ["AtomicDiskSaver", "AtomicCheckpointSaver", "ResumableEarlyStopHandler", "ResumeCheckpointLoader"]


class AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through a temporary file and ``os.replace``, with an optional fixed name.

    A process killed while writing leaves the previous file intact (and at most a stray ``tmp*`` file).
    Files that ignite asks to remove before writing their successor are removed only once the successor
    is in place, so a kill never leaves the folder without a checkpoint.

    Args:
        dirname: the folder of the checkpoints.
        filename: a fixed file name that every save replaces; None keeps ignite's names.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename
        self._to_remove: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        for old in self._to_remove:
            if old != filename:
                super().remove(old)
        self._to_remove = []

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed name is replaced by the next save itself
            self._to_remove.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes, a fixed name for the interval checkpoint and a state.

    MONAI's saver writes with ``DiskSaver(atomic=False)`` and ignite deletes the previous file before it
    writes the next one, so a kill during a save leaves a truncated or no checkpoint; here every file goes
    through :class:`AtomicDiskSaver`. ``state_dict`` returns the best-metric tracking list so that a resumed
    run does not replace the best model with a worse epoch (MONAI's saver has ``load_state_dict`` only).

    Args:
        save_dir: the folder of the checkpoints.
        save_dict: the objects to save, ``{"network": net, "optimizer": opt, ...}``.
        interval_filename: a fixed name for the interval checkpoint (``checkpoint_latest.pt``); it needs
            ``n_saved=1``. None keeps MONAI's ``checkpoint_epoch=N.pt``.
        kwargs: the other arguments of ``monai.handlers.CheckpointSaver``.

    Raises:
        ValueError: when ``interval_filename`` is set with ``n_saved`` other than 1.
    """

    def __init__(self, save_dir: str, save_dict: dict, interval_filename: str | None = None, **kwargs: Any) -> None:
        if interval_filename is not None and kwargs.get("n_saved") != 1:
            raise ValueError(f"interval_filename={interval_filename!r} keeps one checkpoint: it needs n_saved=1.")
        super().__init__(save_dir, save_dict, **kwargs)
        names = {
            "_final_checkpoint": self._final_filename,
            "_key_metric_checkpoint": kwargs.get("key_metric_filename"),
            "_interval_checkpoint": interval_filename,
        }
        for attribute, filename in names.items():
            checkpoint = getattr(self, attribute)
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(save_dir, filename)

    def state_dict(self) -> dict:
        """The best-metric tracking list ``{"_saved": [(score, filename), ...]}`` (empty without a key metric)."""
        if self._key_metric_checkpoint is None:
            return {"_saved": []}
        saved = self._key_metric_checkpoint.state_dict()["_saved"]
        return {"_saved": [(float(score), name) for score, name in saved]}  # plain floats for weights_only


class ResumableEarlyStopHandler(EarlyStopHandler):
    """MONAI's ``EarlyStopHandler`` whose counter and best score go into a checkpoint, with an optional start.

    Ignite's ``EarlyStopping`` has a state, MONAI's wrapper does not expose it. A run restored from a
    checkpoint in which the patience was already spent stops again at once instead of training one more
    epoch. ``set_trainer`` must be called before the state is loaded (the bundles' ``run`` does so first).

    With ``start_above``, the patience only starts to run at the first validation whose score exceeds
    ``start_above``: with :class:`monai_seg.metrics.KaggleSkillMetric` and ``start_above=0.0``, epochs
    in which the model does no better than predicting nothing never count, so a slow start cannot end
    the training at the trivial model. If no validation ever gets there, training runs to
    ``max_epochs`` and a warning says so.

    Args:
        patience: validations without improvement before the training stops.
        score_function: the validation score, higher is better.
        start_above: scores at or below it do not start the patience; None: it starts at once.
        kwargs: the other arguments of ``monai.handlers.EarlyStopHandler``.
    """

    def __init__(self, patience: int, score_function: Callable, start_above: float | None = None,
                 **kwargs: Any) -> None:
        self.start_above = start_above
        self._score_of = score_function
        self._score = 0.0
        super().__init__(patience, self._last_score, **kwargs)

    def _last_score(self, _engine: Engine) -> float:
        """The score of the current validation, computed once by ``__call__``."""
        return self._score

    def set_trainer(self, trainer: Engine) -> None:
        super().set_trainer(trainer)
        if self.start_above is not None:
            trainer.add_event_handler(Events.COMPLETED, self._warn_if_never_started)

    def __call__(self, engine: Engine) -> None:
        self._score = float(self._score_of(engine))
        if self.start_above is not None and self._early_stopping().best_score is None and self._score <= self.start_above:
            return
        super().__call__(engine)

    def _warn_if_never_started(self, trainer: Engine) -> None:
        if self._early_stopping().best_score is None:
            trainer.logger.warning(
                f"no validation scored above {self.start_above} in {trainer.state.epoch} epochs: the best "
                "checkpoint is no better than the trivial prediction; train longer or check the data and settings."
            )

    def _early_stopping(self) -> Any:
        if self._handler is None:
            raise RuntimeError("please set trainer in __init__() or call set_trainer() before loading a state.")
        return self._handler

    def state_dict(self) -> dict:
        """``{"counter": int, "best_score": float | None}``."""
        handler = self._early_stopping()
        best = handler.best_score
        return {"counter": int(handler.counter), "best_score": None if best is None else float(best)}

    def load_state_dict(self, state_dict: Mapping) -> None:
        handler = self._early_stopping()
        handler.counter = int(state_dict["counter"])
        handler.best_score = state_dict["best_score"]
        if handler.counter >= handler.patience:
            handler.trainer.terminate()


class ResumeCheckpointLoader(CheckpointLoader):
    """Resume training from ``load_path`` when it exists; otherwise start afresh on free outputs.

    Attached to the trainer it runs at ``STARTED``. With ``resume`` and an existing ``load_path`` it
    restores every object of ``load_dict`` with MONAI's ``CheckpointLoader`` (``torch.load(...,
    weights_only=True)``: a checkpoint holding arbitrary pickled objects is refused) and logs the epoch it
    continues from. Otherwise the run starts from scratch, and ``load_path`` and ``outputs`` (the results
    of an earlier run, e.g. the best model) must not exist unless ``overwrite``, which removes them.

    Args:
        load_path: the latest checkpoint, as written by :class:`AtomicCheckpointSaver`.
        load_dict: the objects to restore, the same keys as the saved ``save_dict``.
        resume: continue from ``load_path`` when it exists; False always starts afresh. Like ``overwrite``,
            a bool or ``"true"``/``"false"`` (what ``--resume false`` passes to the bundle).
        overwrite: let a fresh start remove ``load_path`` and ``outputs``.
        outputs: other paths a fresh start would replace (see :func:`monai_seg.utils.check_outputs`).
        kwargs: the other arguments of ``monai.handlers.CheckpointLoader`` (``map_location``, ``strict``).

    Raises:
        ValueError: when ``load_path`` is not a readable checkpoint of the expected objects (another network,
            a damaged file, pickled objects other than tensors and containers) or holds more epochs than
            the trainer's ``max_epochs``.
        FileExistsError: when a fresh start would replace earlier results and ``overwrite`` is False.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: dict,
        resume: bool | str = True,
        overwrite: bool | str = False,
        outputs: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(load_path, load_dict, **kwargs)
        self.resume = str2bool(resume)
        self.overwrite = str2bool(overwrite)
        self.outputs = list(outputs)

    def __call__(self, engine: Engine) -> None:
        if self.resume and os.path.isfile(self.load_path):
            try:
                super().__call__(engine)
            except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError) as error:
                raise ValueError(
                    f"cannot resume from {self.load_path}: {error}. Start afresh with --resume false --overwrite true."
                ) from error
            self.logger.info(
                f"Resumed from {self.load_path} at epoch {engine.state.epoch} of {engine.state.max_epochs}."
            )
            return
        check_outputs([self.load_path, *self.outputs], self.overwrite)
