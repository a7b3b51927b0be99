"""Helpers shared by the commands: TrainConfig and data options, JSON and split files, help."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import logging
import shutil
import sys
import textwrap
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_text
from .._names import SAMPLE_SPLIT_OVERLAP
from ..layout import CHECKPOINT_DIR, LAST_CHECKPOINT, SPLIT_NAME
from ..training.config import CHOICES, TrainConfig

if TYPE_CHECKING:
    import torch

    from ..data import ImageDataset


logger = logging.getLogger("robust_contrastive")


@functools.cache
def _field_comments(cls: type) -> dict[str, str]:
    """The comment beside each field of the dataclass ``cls``, read from its module's source.

    A field's comment starts after the ``#`` that follows it on its line and goes on over the
    comment-only lines right below it; a comment line after a blank line (or after a field
    without a comment) heads the next group of fields and belongs to none. The config modules
    stay torch-free, so this reads them without importing torch.
    """
    try:
        source = inspect.getsource(sys.modules[cls.__module__])
    except (OSError, TypeError):  # an install without .py sources: options without help
        return {}
    lines = source.splitlines()
    body = next(
        node.body
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__
    )
    fields: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            row = (node.end_lineno or node.lineno) - 1
            comment = lines[row][node.end_col_offset :].strip()
            comments = [comment] if comment.startswith("#") else []
            while comments and row + 1 < len(lines) and lines[row + 1].lstrip().startswith("#"):
                row += 1
                comments.append(lines[row].strip())
            fields[node.target.id] = " ".join(c.lstrip("#").strip() for c in comments)
    return fields


# Images of the bundled sample that are also in the bundled held-out sample: its held-out split.
_SHARED_SAMPLE_IMAGES = SAMPLE_SPLIT_OVERLAP["sample"]["held_out"]


def _number(text: str) -> float:
    """Parse ``0.03``, ``8/255`` or ``1e-3``."""
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err


def _show(value: object) -> str:
    """A default as help shows it: multiples of 1/255 as reduced fractions (8/255, 2/3), others
    as is."""
    if isinstance(value, float) and not value.is_integer() and 0 < abs(value) < 10:
        numerator = round(value * 255)
        if numerator and numerator / 255 == value:
            fraction = Fraction(numerator, 255)  # 8/255 stays, 170/255 is 2/3
            return f"{fraction.numerator}/{fraction.denominator}"
    return str(value)


def _add_field_options(
    group: argparse._ArgumentGroup,
    cls: type,
    defaults: dict[str, Any],
    *,
    choices: dict[str, tuple[str, ...]] | None = None,
    optional: bool = False,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """An option per field of the config dataclass ``cls`` (but ``skip``), its help the field's
    comment and its shown default ``defaults[name]`` (else the field's). With ``optional`` the
    option's value is None unless given (the config's own default applies). A tuple field
    (milestones) takes any number of integers, as a list: the caller makes it a tuple. Returns
    the names."""
    comments = _field_comments(cls)
    choices = choices or {}
    names = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = defaults.get(f.name, f.default)
        kind: dict[str, Any] = {"type": str}
        if isinstance(default, bool):
            kind = {"action": argparse.BooleanOptionalAction}
        elif f.name in choices:
            kind = {"choices": choices[f.name]}
        elif isinstance(default, tuple):  # epochs (milestones): none, one or more
            kind = {"type": int, "nargs": "*", "metavar": "EPOCH"}
        elif isinstance(default, int) or f.type == "int | None":
            kind = {"type": int}
        elif isinstance(default, float) or f.type == "float | None":
            kind = {"type": _number, "metavar": "X"}
        tuple_default = isinstance(default, tuple)
        shown = " ".join(map(str, default)) if tuple_default else _show(default)
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None if optional else list(default) if tuple_default else default,
            help=f"{comments.get(f.name, f.name)} (default: {shown})",
            **kind,
        )
        names.append(f.name)
    return names


def _add_config_arguments(
    parser: argparse.ArgumentParser,
    overrides: dict[str, Any] | None = None,
    *,
    optional: bool = False,
) -> list[str]:
    """An option per TrainConfig field, its default the field's (or ``overrides``'), read from
    the fields without building a config (its validation imports torch; --help must not). With
    ``optional``, options not given are None (see ``_add_field_options``). Returns the names."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}.")
    group = parser.add_argument_group(
        "training configuration (TrainConfig; bool options also take --no-..., numbers also "
        "fractions such as 8/255)"
    )
    return _add_field_options(group, TrainConfig, overrides, choices=CHOICES, optional=optional)


def _add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    required: bool,
    max_per_class: int | None = None,
    holdout: bool = False,
) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        required=required,
        default=None if required else "sample",
        help="an ImageFolder path, 'cifar10' / 'cifar100' (with --data-root), 'sample' (the "
        "bundled 5,000-image CIFAR-10 sample) or 'sample-held-out' (2,000 bundled CIFAR-10 "
        f"images that the bundled pretrained models never saw; {_SHARED_SAMPLE_IMAGES} of them "
        "are also in 'sample')",
    )
    group.add_argument("--data-root", default=None, help="root folder of cifar10 / cifar100")
    group.add_argument("--download", action="store_true", help="download cifar10 / cifar100")
    group.add_argument(
        "--max-per-class",
        type=int,
        default=max_per_class,
        help=f"use at most this many images per class (default: {max_per_class or 'all'})",
    )
    if holdout:
        group.add_argument(
            "--val-per-class",
            type=int,
            default=0,
            help="hold out this many images per class (seeded, stratified) from training; their "
            "indices go to OUT/split.json for an honest evaluation later (default: 0)",
        )


def _add_run_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """--resume and --overwrite of a command that trains into ``OUT``."""
    parser.add_argument("--resume", action="store_true", help=out_help)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start from scratch even if OUT holds a run (its checkpoint is replaced)",
    )


def _refuse_existing_runs(args: argparse.Namespace, *runs: Path) -> None:
    """Refuse, before anything is written, to start over in a run folder of ``runs`` that holds
    a checkpoint unless ``--resume`` or ``--overwrite`` says what to do with it."""
    for run in runs:
        existing = run / CHECKPOINT_DIR / LAST_CHECKPOINT
        if existing.exists() and not args.resume and not args.overwrite:
            raise FileExistsError(
                f"{args.out} already holds a training run ({existing}): continue it with "
                "--resume, start it again from scratch with --overwrite, or pick another --out."
            )


def _run_config(args: argparse.Namespace, *runs: Path) -> TrainConfig:
    """The TrainConfig of the options (the field's default where an optional option is not
    given), after ``_refuse_existing_runs(args, *runs)``."""
    values = {
        f.name: value
        for f in dataclasses.fields(TrainConfig)
        if (value := getattr(args, f.name)) is not None or f.default is None
    }
    if getattr(args, "simclr", False):
        values["adversarial"] = False
    config = TrainConfig(**values)
    _refuse_existing_runs(args, *runs)
    return config


def _read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file when it is not one."""
    try:
        value = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): expected {what}.") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}: expected {what}.")
    return value


def _load_data(args: argparse.Namespace, part: str | None = None, **options: Any) -> ImageDataset:
    """The images of the data options (and ``options`` of ``load_dataset``); with ``--split``,
    only its ``part`` ("train" or "val") of them."""
    from ..data import load_dataset

    dataset = load_dataset(
        args.data,
        root=args.data_root,
        download=args.download,
        max_per_class=args.max_per_class,
        **options,
    )
    if part is None or not args.split:
        return dataset
    what = 'a split.json of `robust-contrastive train --val-per-class` ("train" and "val" lists)'
    split = _read_json_object(args.split, what)
    if part not in split:
        raise ValueError(f"{args.split} has no {part!r} indices (keys: {sorted(split)}).")
    indices = split[part]
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise ValueError(f"{args.split}: {part!r} must be a list of integer image indices.")
    return dataset.subset(indices)


def _write_split(
    out: Path, data: str, seed: int, train: torch.Tensor, val: torch.Tensor, **extra: int
) -> None:
    """Write OUT/split.json: a run's training and held-out image indices, with the data and the
    seed that drew them (and the ``extra`` fields, before the indices)."""
    split = {"data": str(data), "seed": seed, **extra, "train": train.tolist(), "val": val.tolist()}
    atomic_write_text(out / SPLIT_NAME, json.dumps(split))


def _paragraphs(text: str) -> str:
    """``text``'s paragraphs (separated by blank lines) re-wrapped to the help's width, never at
    a hyphen (option names stay whole)."""
    width = max(min(shutil.get_terminal_size().columns - 2, 88), 40)
    return "\n\n".join(
        textwrap.fill(" ".join(paragraph.split()), width, break_on_hyphens=False)
        for paragraph in text.split("\n\n")
    )


_Command = Callable[[argparse.Namespace], int]
_HELP: dict[_Command, tuple[str, str, str]] = {}  # the --help texts of each command function


def _command(summary: str, description: str, examples: str) -> Callable[[_Command], _Command]:
    """Record the --help texts of the command function it decorates, for ``_subcommand``."""

    def record(func: _Command) -> _Command:
        _HELP[func] = (summary, description, examples)
        return func

    return record


def _subcommand(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], func: _Command
) -> argparse.ArgumentParser:
    """The subcommand that runs ``func(args)``, named after it (``_cmd_list_pretrained``:
    ``list-pretrained``): its --help opens with the ``summary`` and ``description`` given to
    ``@_command`` (paragraphs, wrapped here) and ends with the ``examples`` (shell lines, shown
    as written)."""
    summary, description, examples = _HELP[func]
    parser = sub.add_parser(
        func.__name__.removeprefix("_cmd_").replace("_", "-"),
        help=summary,
        description=_paragraphs(f"{summary[0].upper()}{summary[1:]}.\n\n{description}"),
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
