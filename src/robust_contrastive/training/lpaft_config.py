"""[`LPAFTConfig`][robust_contrastive.training.lpaft_config.LPAFTConfig]: the settings of
DynACL++'s post-processing (Luo et al., ICLR 2023), torch-free at import (the command line reads
the fields' comments and defaults for ``robust-contrastive lpaft --help``).
[`train_lpaft`][robust_contrastive.training.lpaft.train_lpaft] runs them.

Defaults are the official code's (github.com/PKU-ML/DYNACL): ``assign_label.py`` (k-means
pseudo-labels), ``LPAFT.py`` (the linear probe on them, then TRADES fine-tuning) and
``utils.py`` (``trades_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import FlatConfig, check_device, check_milestones

__all__ = ["KMEANS_INITS", "LPAFT_CONFIG_NAME", "RESUMABLE_CHANGES", "LPAFTConfig"]

LPAFT_CONFIG_NAME = "lpaft_config.json"  # the run's settings in out_dir
KMEANS_INITS: tuple[str, ...] = ("random", "k-means++")
# Settings that may change between a run and its resumption without changing what it computes.
RESUMABLE_CHANGES: tuple[str, ...] = ("device", "progress", "checkpoint_every")


@dataclass
class LPAFTConfig(FlatConfig):
    """DynACL++'s post-processing: k-means pseudo-labels, a linear probe on them, then TRADES
    fine-tuning of the whole network from that probe. Defaults are the official CIFAR-10 run's
    (``assign_label.py``, ``LPAFT.py``): k = 10, a 10-epoch clean probe at lr 0.01, 25 epochs of
    TRADES (beta 6, PGD-10 on the KL) at lr 0.1 divided by 10 after epochs 10 and 20, batch 512,
    SGD with momentum 0.9 and weight decay 1e-4, crop + flip."""

    # pseudo-labels: k-means on the encoder's features of the un-augmented images
    clusters: int = 10  # k of k-means: assign_label.py clusters into 10 (num_clusters in [10]),
    # for every data set (CIFAR-100 too); also the pseudo-label head's outputs
    kmeans_init: str = "random"  # "random": k distinct images' features (kmeans_pytorch, as the
    # official code); "k-means++" (D^2 sampling)
    kmeans_tol: float = 1e-4  # stop once (sum of the centres' shifts)^2 < tol: kmeans_pytorch's
    # tol=1e-4
    kmeans_iterations: int = 1000  # cap on Lloyd iterations (the official has none:
    # iter_limit=0; it converges long before)

    # linear probe on the pseudo-labels (LPAFT.py train_head: encoder frozen, clean images)
    probe_epochs: int = 10  # epochs of the probe: LPAFT.py --epochs_head 10
    probe_lr: float = 0.01  # the probe's lr, constant: LPAFT.py --lr_head 0.01 (milestones=[])
    probe_momentum: float = 0.9  # the probe's SGD momentum: LPAFT.py optimizer_head's 0.9
    probe_weight_decay: float = 1e-4  # the probe's weight decay: optimizer_head's 1e-4

    # adversarial full fine-tuning on the pseudo-labels from the probe's head (LPAFT.py train)
    epochs: int = 25  # epochs of the fine-tuning: LPAFT.py --epochs 25
    lr: float = 0.1  # the fine-tuning's lr (SGD on every parameter, the head's too): --lr 0.1
    milestones: tuple[int, ...] = (10, 20)  # lr / 10 from these 0-based epochs: LPAFT.py's
    # MultiStepLR(milestones=[10, 20]) stepped once per epoch; none: a constant lr
    momentum: float = 0.9  # the fine-tuning's SGD momentum: LPAFT.py optimizer's 0.9
    weight_decay: float = 1e-4  # the fine-tuning's weight decay: LPAFT.py optimizer's 1e-4
    trades_beta: float = 6.0  # beta, the weight of TRADES' KL term: utils.py trades_loss beta=6.0
    eps: float = 8 / 255  # l-inf radius of the KL attack: trades_loss epsilon=8/255
    alpha: float = 2 / 255  # step of the KL attack: trades_loss step_size=2/255
    attack_steps: int = 10  # steps of the KL attack: LPAFT.py train() passes perturb_steps=10

    # data (both stages)
    batch_size: int = 512  # images per step of the probe and the fine-tuning: --batch_size 512
    crop_padding: int = 4  # RandomCrop(32, padding=4) + RandomHorizontalFlip (tfs_val), both
    # stages

    # run
    seed: int = 0  # seeds the k-means start, the data order, augmentation and attack starts
    device: str = "auto"  # "auto" = cuda if available else cpu; or any torch device string
    progress: bool = True  # tqdm progress bars
    checkpoint_every: int = 5  # fine-tuning epochs between checkpoints (LPAFT.py saves
    # model.pt every 5 epochs; and one at the end)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the fix when a setting is invalid."""
        self.check_fields(
            positive_ints=(
                "clusters",
                "kmeans_iterations",
                "probe_epochs",
                "epochs",
                "batch_size",
                "checkpoint_every",
            ),
            counts=("attack_steps", "crop_padding", "seed"),
            positive=("kmeans_tol", "probe_lr", "lr", "alpha"),
            non_negative=("probe_weight_decay", "weight_decay", "trades_beta", "eps"),
            flags=("progress",),
            choices=(("kmeans_init", KMEANS_INITS),),
        )
        if self.clusters < 2:
            raise ValueError(
                f"clusters must be >= 2 (a classifier needs two classes), got {self.clusters}."
            )
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (BatchNorm statistics need two images), got "
                f"{self.batch_size}."
            )
        for name in ("probe_momentum", "momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        if isinstance(self.milestones, (list, tuple)) and len(self.milestones) == 0:
            self.milestones = ()  # a constant lr
        else:  # a JSON list read back: a tuple
            self.milestones = check_milestones(self.milestones)
        check_device(self.device)
