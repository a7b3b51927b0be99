"""The file names of a model folder and of a run folder, defined once.

Every module that reads or writes these folders (models, trainer, fine-tuning, probe, model
cards, registry, command line) takes the names from here, so that a folder written by one is
understood by the others. The module imports nothing, so it is cheap to import anywhere.

A model folder (``save_pretrained``)::

    FOLDER/config.json            CONFIG_NAME: model_type, format_version and constructor args
    FOLDER/model.safetensors      WEIGHTS_NAME
    FOLDER/README.md              CARD_NAME: the model card, generated from the files here
    FOLDER/eval_results.json      EVAL_RESULTS_NAME: evaluations tied to the weights' SHA-256
    FOLDER/provenance.json        PROVENANCE_NAME (optional): the card's "Training data"
    FOLDER/comparison.json        COMPARISON_NAME (optional): the card's "Comparison"
    FOLDER/projector/             PROJECTOR_DIR: an encoder's projection head
    FOLDER/encoder/               ENCODER_DIR: a classifier's encoder

A run folder (``RoCLTrainer``, ``finetune``, ``robust-contrastive train``) adds::

    OUT/train_config.json         TRAIN_CONFIG_NAME (FINETUNE_CONFIG_NAME for fine-tuning)
    OUT/metrics.jsonl             METRICS_NAME: one JSON object per epoch
    OUT/checkpoints/last.pt       CHECKPOINT_DIR / LAST_CHECKPOINT
    OUT/split.json                SPLIT_NAME: training and held-out indices (``--val-per-class``)
"""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
EVAL_RESULTS_NAME = "eval_results.json"
PROVENANCE_NAME = "provenance.json"
"""Optional data record of a model folder, rendered as the card's "Training data" section.

A JSON object: ``format_version`` (1), ``dataset`` (e.g. ``"CIFAR-10 training set ..."``),
``image_size`` ([H, W] of the training images), ``splits`` (a list of objects with ``name``,
``role``, ``images`` (a count), ``which`` (the rule that picks the images, e.g. the file holding
their indices) and, optionally, ``overlap`` ({sample name: images in common})), ``probe`` (for
probes: an object of probe-training facts, e.g. ``training images``, ``selected on``, ``kept
epoch``), ``notes`` and ``limitations`` (lists of sentences)."""
COMPARISON_NAME = "comparison.json"
"""Optional comparison tables of a model folder, rendered as the card's "Comparison" section.

A JSON object: ``format_version`` (1) and ``tables``, a list of objects with ``title``,
``columns`` (header strings), ``rows`` (lists of cells) and ``notes`` (sentences: where each
figure comes from)."""
PROJECTOR_DIR = "projector"
ENCODER_DIR = "encoder"

TRAIN_CONFIG_NAME = "train_config.json"
FINETUNE_CONFIG_NAME = "finetune_config.json"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
SPLIT_NAME = "split.json"
