"""Models: the CIFAR ResNet encoder and its heads."""

from .encoder import EncoderConfig, RoCLEncoder
from .heads import ProjectionHead, ProjectionHeadConfig
from .pretrained import PretrainedMixin, load_state_dict_strict

__all__ = [
    "EncoderConfig",
    "PretrainedMixin",
    "ProjectionHead",
    "ProjectionHeadConfig",
    "RoCLEncoder",
    "load_state_dict_strict",
]
