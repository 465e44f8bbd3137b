"""Ignite handlers for MONAI's engines (the bundles attach them; no engine is forked)."""

from .checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    ResumableEarlyStopHandler,
    ResumeCheckpointLoader,
    check_outputs,
)
from .handlers import SubmissionWriter, image_id_from_meta
