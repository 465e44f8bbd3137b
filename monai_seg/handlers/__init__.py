"""Ignite handlers that the bundles attach to MONAI's engines (as ``monai.handlers``; no engine is forked).

- checkpoints and resume (:mod:`.checkpoint`): atomic checkpoints, resuming from the latest one, early
  stopping with a state;
- reports (:mod:`.reports`): the per-image / per-case CSV and summary JSON of an evaluator run, and its
  retention curve (case triage), calibration before and after temperature scaling;
- figures (:mod:`.figures`): training curves, overlay grids and uncertainty figures, drawn during a run;
- submission (:mod:`.submission`): the Kaggle nerve submission of an inference run and its referral side report.
"""

from .checkpoint import AtomicCheckpointSaver, AtomicDiskSaver, ResumableEarlyStopHandler, ResumeCheckpointLoader
from .figures import OverlayGrid, RedrawThrottle, TrainingCurves, UncertaintyFigures
from .reports import BraTSReport, CalibrationReport, ReportHandler, SegmentationReport, write_retention_report
from .submission import SubmissionWriter, image_id_from_meta
from .utils import item_case_name
