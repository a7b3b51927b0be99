"""Models: the CIFAR ResNet encoder, its heads and the classifier (encoder + linear head)."""

from .classifier import Classifier, RobustClassifier, RobustClassifierConfig
from .encoder import EncoderConfig, RoCLEncoder
from .heads import ProjectionHead, ProjectionHeadConfig
from .pretrained import PretrainedMixin, load_pretrained, load_state_dict_strict, model_class

__all__ = [
    "Classifier",
    "EncoderConfig",
    "PretrainedMixin",
    "ProjectionHead",
    "ProjectionHeadConfig",
    "RoCLEncoder",
    "RobustClassifier",
    "RobustClassifierConfig",
    "load_pretrained",
    "load_state_dict_strict",
    "model_class",
]
