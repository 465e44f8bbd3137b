"""Metrics MONAI lacks: Kaggle per-image Dice and the binary report, BraTS volume metrics, uncertainty quality."""

from .brats import VOLUME_METRICS, compute_volume_metrics
from .calibration import (
    CalibrationStats,
    calibration_target,
    fit_temperature,
    negative_log_likelihood,
    rescale_probabilities,
    sample_pixels,
    separated_channels,
)
from .fov import from_engine_fov, select_fov
from .qubrats import QUBRATS_METRICS, QUBraTSMetric, compute_qubrats_curves, compute_qubrats_score
from .segmentation import (
    SEGMENTATION_METRICS,
    BinarySegmentationMetrics,
    KaggleDiceMetric,
    KaggleSkillMetric,
    compute_kaggle_dice,
    compute_presence_metrics,
    score_submission,
    empty_safe_confusion_matrix_metric,
    segmentation_metrics_from_confusion_matrix,
    write_segmentation_report,
)
from .triage import (
    TRIAGE_SCORES,
    RetentionCurve,
    compute_interval_referral_score,
    compute_retention_curve,
    compute_triage_score,
    write_retention_curve,
)
from .uncertainty import (
    MeanCalibrationErrorMetric,
    UncertaintyErrorAUROCMetric,
    UncertaintyErrorOverlapMetric,
    compute_uncertainty_error_auroc,
    compute_uncertainty_error_overlap,
    max_uncertainty,
)
