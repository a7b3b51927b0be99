"""Evaluation: linear probes, fine-tuning, smoothed inference, transfer and robustness reports."""

from .checks import (
    ProbeNotLearningWarning,
    UnreliableEvaluationWarning,
    class_counts,
    evaluation_set_warnings,
)
from .finetuning import FinetuneConfig, FinetuneResult, RobustClassifier, TradesAttack, finetune
from .probe import ProbeConfig, RobustLinearProbe, accuracy
from .protocol import (
    ProtocolConfig,
    ProtocolResult,
    ProtocolRow,
    evaluate_protocol,
    repeated_images,
    shared_images,
)
from .smoothing import TransformationSmoothedClassifier, accuracy_vs_samples
from .suite import (
    DEFAULT_THREATS,
    THREATS,
    RobustnessReport,
    Threat,
    ThreatResult,
    evaluate_robustness,
    sanity_warnings,
    zero_gradient_fraction,
)
from .transfer import transfer_accuracy

__all__ = [
    "DEFAULT_THREATS",
    "THREATS",
    "FinetuneConfig",
    "FinetuneResult",
    "ProbeConfig",
    "ProbeNotLearningWarning",
    "ProtocolConfig",
    "ProtocolResult",
    "ProtocolRow",
    "RobustClassifier",
    "RobustLinearProbe",
    "RobustnessReport",
    "Threat",
    "ThreatResult",
    "TradesAttack",
    "TransformationSmoothedClassifier",
    "UnreliableEvaluationWarning",
    "accuracy",
    "accuracy_vs_samples",
    "class_counts",
    "evaluate_protocol",
    "evaluate_robustness",
    "evaluation_set_warnings",
    "finetune",
    "repeated_images",
    "sanity_warnings",
    "shared_images",
    "transfer_accuracy",
    "zero_gradient_fraction",
]
