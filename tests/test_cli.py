from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

import robust_contrastive
from robust_contrastive import RoCLEncoder, TrainConfig
from robust_contrastive._names import ARCHS, SAMPLE_SPLIT_OVERLAP, THREAT_NAMES
from robust_contrastive.cli import build_parser, main
from robust_contrastive.cli._common import _field_comments, _show
from robust_contrastive.cli.quickstart import _details_to_file
from robust_contrastive.models import ProjectionHead

TINY_FLAGS = [
    "--width",
    "4",
    "--projection-hidden-dim",
    "16",
    "--projection-dim",
    "8",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--image-size",
    "16",
    "--attack-steps",
    "1",
    "--no-progress",
    "--device",
    "cpu",
]


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageFolder of 2 classes x 6 random 16x16 PNGs."""
    root = tmp_path / "images"
    g = torch.Generator().manual_seed(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
            write_png(image, str(root / name / f"{i}.png"))
    return root


def test_train_on_an_image_folder(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(image_folder),
            "--out",
            str(out),
            "--eps",
            "8/255",
            "--checkpoint-every",
            "1",
            *TINY_FLAGS,
        ]
    )
    assert code == 0
    encoder = RoCLEncoder.from_pretrained(out)
    assert encoder.config.width == 4
    ProjectionHead.from_pretrained(out / "projector")
    config = json.loads((out / "train_config.json").read_text())
    assert config["eps"] == pytest.approx(8 / 255)
    assert config["adversarial"] is True
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out / "checkpoints" / "last.pt").is_file()
    assert "RoCLEncoder.from_pretrained" in capsys.readouterr().out


def test_simclr_resume_and_validation_split(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "simclr"
    args = [
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--simclr",
        "--val-per-class",
        "2",
        *TINY_FLAGS,
    ]
    assert main(args) == 0
    assert json.loads((out / "train_config.json").read_text())["adversarial"] is False
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 4
    assert len(split["train"]) == 8
    assert not set(split["val"]) & set(split["train"])
    # Resuming a finished run trains nothing more and keeps the history.
    assert main([*args, "--resume"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_quickstart_on_the_bundled_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quick"
    code = main(
        [
            "quickstart",
            "--out",
            str(out),
            "--max-per-class",
            "2",
            "--held-out-per-class",
            "2",
            "--probe-epochs",
            "2",
            *TINY_FLAGS,
        ]
    )
    assert code == 0
    for method in ("simclr", "rocl"):
        assert RoCLEncoder.from_pretrained(out / method).config.width == 4
        report = json.loads((out / method / "report.json").read_text())
        assert report["n_images"] == 20
        assert [r["name"] for r in report["results"]] == ["linf-8/255"]
    split = json.loads((out / "split.json").read_text())
    assert not set(split["val"]) & set(split["train"])
    summary = json.loads((out / "quickstart.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["SimCLR", "RoCL"]
    captured = capsys.readouterr()
    printed = captured.out
    assert "| RoCL |" in printed
    assert "| SimCLR |" in printed
    assert "Chance: 10.0 % (10 classes" in printed  # 2 held-out images of each class
    assert "train images/s: training images per second in the last epoch" in printed
    # The console stays quiet: the details (INFO lines, per-epoch JSON) go to the log file.
    log = out / "quickstart.log"
    assert str(log) in printed
    assert "INFO" not in captured.err
    assert '"epoch"' not in captured.err
    details = log.read_text()
    assert '"epoch": 1' in details  # the training epochs and the probes' epochs
    assert details.count("linear evaluation") == 2
    assert summary["chance"] == pytest.approx(0.1)


def test_probe_selects_the_r_le_epoch_on_robust_accuracy(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder_dir = tmp_path / "encoder"
    RoCLEncoder(width=4).save_pretrained(encoder_dir)
    probe_dir = tmp_path / "probe"
    code = main(
        [
            "probe",
            "--encoder",
            str(encoder_dir),
            "--data",
            str(image_folder),
            "--out",
            str(probe_dir),
            "--adversarial",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--val-per-class",
            "2",
            "--select",
            "robust",
            "--no-progress",
        ]
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.split("last epoch: ")[1].splitlines()[0])
    assert 0.0 <= last["val_adv_acc"] <= 1.0  # scored under the r-LE attack
    assert (probe_dir / "model.safetensors").is_file()


def test_train_probe_evaluate(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(image_folder),
                "--out",
                str(run),
                "--val-per-class",
                "2",
                *TINY_FLAGS,
            ]
        )
        == 0
    )
    probe_dir = tmp_path / "probe"
    assert (
        main(
            [
                "probe",
                "--encoder",
                str(run),
                "--data",
                str(image_folder),
                "--split",
                str(run / "split.json"),
                "--out",
                str(probe_dir),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    report_path = tmp_path / "report.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(probe_dir),
                "--data",
                str(image_folder),
                "--split",
                str(run / "split.json"),
                "--out",
                str(report_path),
                "--threats",
                "linf-8/255",
                "l2-0.5",
                "--no-progress",
                "--attach",
                str(probe_dir),
                str(run),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["n_images"] == 4  # the held-out images of the training run only
    # The report is now in both model cards, with the training settings of the run.
    from huggingface_hub import ModelCard

    for folder in (probe_dir, run):
        card = ModelCard.load(folder / "README.md")
        # 4 images (< 100): shown under a warning, kept out of the model-index metadata
        assert card.data.eval_results is None
        assert "**Warning:** only 4 evaluation images" in card.text
        assert card.text.count("| robust accuracy, PGD-20 ") == 2  # linf and l2 rows
        assert "| robust accuracy, PGD-20 l2 eps=0.5" in card.text
    assert "| epochs | 1 |" in (run / "README.md").read_text()
    other = tmp_path / "other"
    RoCLEncoder(width=4).save_pretrained(other)
    with pytest.raises(SystemExit):
        main(["card", str(other), "--report", str(report_path)])
    assert "evaluated other weights" in capsys.readouterr().err
    assert main(["card", str(run), "--repo-id", "org/tiny"]) == 0
    assert 'from_pretrained("org/tiny")' in (run / "README.md").read_text()
    assert [r["name"] for r in report["results"]] == ["linf-8/255", "l2-0.5"]
    assert report_path.with_suffix(".md").is_file()
    smoothed = tmp_path / "smoothed.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(probe_dir),
                "--data",
                str(image_folder),
                "--split",
                str(run / "split.json"),
                "--out",
                str(smoothed),
                "--threats",
                "linf-8/255",
                "--smoothed",
                "2",
                "--eot-samples",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads(smoothed.read_text())["results"][0]
    assert result["attack"] == "eot-pgd"


def test_evaluate_refuses_an_encoder(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    RoCLEncoder(width=4).save_pretrained(tmp_path / "enc")
    with pytest.raises(SystemExit):
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "enc"),
                "--data",
                str(image_folder),
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
    assert "not a classifier" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "/no/such/folder", "--out", "x"], "'/no/such/folder'"),
        (["train", "--data", "cifar10", "--out", "x"], "root"),
        (["train", "--data", "sample", "--out", "x", "--arch", "resnet9"], "invalid choice"),
        (["train", "--data", "sample", "--out", "x", "--eps", "-1"], "eps"),
    ],
)
def test_errors_are_clear(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_folder_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert "error" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "robust_contrastive", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--data", "--out", "--simclr", "--resume", "--checkpoint-every", "--eps"):
        assert flag in result.stdout


def test_evaluate_refuses_split_with_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "split.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path),
                "--data",
                "cifar10",
                "--data-root",
                str(tmp_path),
                "--split",
                str(tmp_path / "split.json"),
                "--test-split",
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
    assert "--test-split" in capsys.readouterr().err


def test_push_and_list_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub

    uploaded: list[str] = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: None)

    def upload_folder(self: object, *, folder_path: Path, **kwargs: object) -> str:
        uploaded.extend(sorted(p.name for p in Path(folder_path).iterdir()))
        return "https://hub/commit/2"

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    RoCLEncoder(width=4).save_pretrained(tmp_path / "enc")
    assert main(["push", str(tmp_path / "enc"), "org/tiny-enc"]) == 0
    assert uploaded == ["README.md", "config.json", "model.safetensors"]
    assert "https://hub/commit/2" in capsys.readouterr().out
    assert main(["list-pretrained"]) == 0


def test_train_refuses_to_overwrite_a_run(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    command = ["train", "--data", str(image_folder), "--out", str(out), *TINY_FLAGS]
    assert main(command) == 0
    checkpoint = (out / "checkpoints" / "last.pt").read_bytes()
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit):
        main(command)
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").read_bytes() == checkpoint  # nothing damaged
    assert (out / "model.safetensors").read_bytes() == weights
    assert main([*command, "--overwrite"]) == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"robust-contrastive {robust_contrastive.__version__}\n"


def test_help_lists_choices_fractions_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for choices in (
        "{linf,l2,l1}",
        "{fp32,bf16}",
        "{separate,shared}",
        "{contrastive,mse,cosine,l1}",
        "{augmented,original}",
        "{resnet18,resnet34,resnet50}",
    ):
        assert choices in text
    assert "(default: 8/255)" in text
    assert "0.0313" not in text
    for command in ("train", "quickstart", "probe", "evaluate", "card", "push", "convert"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "\nexamples:\n  robust-contrastive " in text or "torchrun" in text
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "linf-8/255, linf-16/255" in capsys.readouterr().out


def test_each_command_runs_the_function_it_is_named_after() -> None:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    commands = "train quickstart probe evaluate card push list-pretrained convert protocol lpaft"
    assert list(subparsers.choices) == commands.split()
    for name, parser in subparsers.choices.items():
        assert parser.get_default("func").__name__ == "_cmd_" + name.replace("-", "_")


@dataclasses.dataclass
class _Commented:
    # a group
    first: int = 1  # the first field, whose comment goes
    # on over the next line
    # and this one
    bare: int = 2

    # a group after a blank line, not a continuation
    last: str = "#"  # a '#' in a default is no comment


def test_field_comments_follow_the_comment_lines_below_a_field() -> None:
    assert _field_comments(_Commented) == {
        "first": "the first field, whose comment goes on over the next line and this one",
        "bare": "",
        "last": "a '#' in a default is no comment",
    }


def test_every_config_option_takes_its_help_from_the_config_field() -> None:
    comments = _field_comments(TrainConfig)
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    for command in ("train", "quickstart"):
        actions = {a.dest: a for a in subparsers.choices[command]._actions}
        for field in dataclasses.fields(TrainConfig):
            assert comments[field.name], f"TrainConfig.{field.name} has no comment"
            help_text = actions[field.name].help
            assert help_text is not None
            assert help_text.startswith(f"{comments[field.name]} (default: ")
    # A comment continued on the lines below its field, up to the next group's heading.
    assert comments["attack_source"].endswith("Target: t'(x) either way")
    assert comments["regularizer_forward"].endswith("(cheaper, other BatchNorm statistics)")


def test_data_help_takes_the_sample_overlap_from_the_data_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{SAMPLE_SPLIT_OVERLAP['sample']['held_out']} of them are also in 'sample'" in text


def test_quickstart_refuses_a_rerun_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quick"
    (out / "rocl" / "checkpoints").mkdir(parents=True)
    (out / "rocl" / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    (out / "quickstart.log").write_text("the earlier run's log\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["quickstart", "--out", str(out), *TINY_FLAGS])
    assert exit_info.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "quickstart.log").read_text() == "the earlier run's log\n"
    assert sorted(p.name for p in out.iterdir()) == ["quickstart.log", "rocl"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(8 / 255, "8/255"), (2 / 255, "2/255"), (0.007, "0.007"), (0.5, "0.5"), (256.0, "256.0")],
)
def test_defaults_shown_as_fractions_of_255(value: float, shown: str) -> None:
    assert _show(value) == shown


def test_command_line_import_does_not_import_torch() -> None:
    code = (  # building the parser reads the config fields' comments, without torch
        "import sys, robust_contrastive, robust_contrastive.cli; "
        "robust_contrastive.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_every_public_name_resolves() -> None:
    import robust_contrastive.training as training

    for module in (robust_contrastive, training):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
        assert set(module.__all__) <= set(dir(module))
    assert robust_contrastive.RoCLEncoder is RoCLEncoder
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        robust_contrastive.NoSuchName  # noqa: B018


def test_submodules_are_attributes_of_the_lazy_packages() -> None:
    code = (
        "import robust_contrastive as rc; "
        "print(rc.evaluation.__name__, rc.training.distributed.__name__, rc.layout.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [
        "robust_contrastive.evaluation",
        "robust_contrastive.training.distributed",
        "robust_contrastive.layout",
    ]


def test_light_name_lists_match_their_modules() -> None:
    from robust_contrastive.evaluation.suite import THREATS
    from robust_contrastive.models.encoder import _ARCHS

    assert tuple(THREATS) == THREAT_NAMES
    assert tuple(_ARCHS) == ARCHS


def test_progress_bar_counts_epochs_from_one(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bar"
    flags = [flag for flag in TINY_FLAGS if flag != "--no-progress"]
    flags[flags.index("--epochs") + 1] = "2"
    assert main(["train", "--data", str(image_folder), "--out", str(out), "--simclr", *flags]) == 0
    err = capsys.readouterr().err
    assert "SimCLR epoch 1/2" in err
    assert "SimCLR epoch 2/2" in err
    assert "epoch 0" not in err
    epochs = [
        json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]


def test_details_go_to_the_log_file_and_warnings_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = logging.getLogger("robust_contrastive.training.trainer")
    log = tmp_path / "details.log"
    with _details_to_file(log, verbose=False, append=False):
        library.info("an epoch's metrics")
        library.warning("something to see")
    err = capsys.readouterr().err
    assert "something to see" in err
    assert "an epoch's metrics" not in err
    text = log.read_text()
    assert "an epoch's metrics" in text
    assert "something to see" in text
    # Afterwards the library logs through the root logger again, as before.
    assert logging.getLogger("robust_contrastive").propagate
    assert not logging.getLogger("robust_contrastive").handlers


def test_protocol_writes_one_table_of_slf_alf_aff(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    RoCLEncoder("resnet18", width=4).save_pretrained(tmp_path / "encoder")
    test_folder = tmp_path / "test-images"  # other random images, 3 per class
    g = torch.Generator().manual_seed(1)
    for name in ("cat", "dog"):
        (test_folder / name).mkdir(parents=True)
        for i in range(3):
            image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
            write_png(image, str(test_folder / name / f"{i}.png"))
    out = tmp_path / "protocol"
    tiny = ["--epochs", "1", "--linear-batch-size", "4", "--aff-batch-size", "4"]
    tiny += ["--train-attack-steps", "1", "--test-attack-steps", "1", "--no-autoattack"]
    tiny += ["--no-sanity-checks", "--device", "cpu", "--no-progress"]
    argv = ["protocol", "--model", str(tmp_path / "encoder"), "--data", str(image_folder)]
    argv += ["--test-data", str(test_folder), "--out", str(out), *tiny]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| mode | clean (%) | PGD-1 (%) | AutoAttack (%) |" in printed
    saved = json.loads((out / "protocol.json").read_text())
    assert [row["mode"] for row in saved["rows"]] == ["slf", "alf", "aff"]
    # 6 images per class: 1 per class picks the epoch (--val-fraction 0.1), 5 train
    assert [(r["n_train"], r["n_val"], r["n_test"]) for r in saved["rows"]] == [(10, 2, 6)] * 3
    assert saved["config"]["epochs"] == 1
    assert (out / "protocol.md").read_text().startswith(str(tmp_path / "encoder"))
    # --data without a held-out set of its own needs --test-data
    with pytest.raises(SystemExit):
        main(
            [
                "protocol",
                "--model",
                str(tmp_path / "encoder"),
                "--data",
                str(image_folder),
                "--out",
                str(out),
                *tiny,
            ]
        )
    assert "pass --test-data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test-data", "sample"], "every image of --data sample is also a test image"),
        (["--val-fraction", "-0.1"], "--val-fraction must be in [0, 1)"),
    ],
)
def test_protocol_refuses_a_test_set_that_is_the_data_and_a_bad_val_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["protocol", "--model", "rocl-resnet18-w16-cifar10-cpu", "--data", "sample"]
    with pytest.raises(SystemExit):
        main([*argv, "--max-per-class", "5", "--out", str(tmp_path / "p"), *extra])
    assert message in capsys.readouterr().err


def test_train_method_deacl(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = tmp_path / "teacher"
    RoCLEncoder(width=4).save_pretrained(teacher)
    out = tmp_path / "deacl"
    command = [
        "train", "--method", "deacl", "--teacher", str(teacher), "--data", str(image_folder),
        "--out", str(out), "--epochs", "2", "--batch-size", "4", "--attack-steps", "1",
        "--weight", "1.5", "--no-progress", "--device", "cpu", "--val-per-class", "2",
    ]  # fmt: skip
    assert main(command) == 0
    assert "trained DeACL on 8 images" in capsys.readouterr().out
    student = RoCLEncoder.from_pretrained(out)
    assert student.config.width == 4
    config = json.loads((out / "deacl_config.json").read_text())
    # Given options replace DeACL's defaults; the others stay DeACL's own (not RoCL's).
    assert (config["epochs"], config["weight"], config["attack_steps"]) == (2, 1.5, 1)
    assert (config["lr"], config["eps"]) == (0.5, 8 / 255)
    assert len(json.loads((out / "split.json").read_text())["val"]) == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # A finished run is refused without --resume; with it, nothing more is trained.
    with pytest.raises(SystemExit):
        main(command)
    assert "--resume" in capsys.readouterr().err
    assert main([*command, "--resume"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "deacl"], "--method deacl needs --teacher"),
        (["--teacher", "x"], "--teacher is DeACL's"),
        (["--method", "deacl", "--simclr", "--teacher", "x"], "--simclr is --method simclr"),
        (["--method", "rocl", "--simclr"], "--simclr is --method simclr"),
        (["--method", "deacl", "--teacher", "x", "--lars"], "--lars is not a setting of"),
        (["--weight", "2"], "--weight is not a setting of --method rocl"),
        (["--method", "simclr", "--student-init", "scratch"], "--student-init is not a setting"),
        (["--method", "simclr", "--adversarial"], "--adversarial is RoCL's"),
        (["--simclr", "--adversarial"], "--adversarial is RoCL's"),
        (["--method", "acl", "--reweight", "dynamic"], "invalid choice: 'dynamic'"),
    ],
)
def test_train_method_option_errors(
    tmp_path: Path,
    image_folder: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["train", "--data", str(image_folder), "--out", str(out), *extra])
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("method", "saved", "message"),
    [
        ("rocl", "acl_config.json", "a run of --method acl / dynacl / air"),
        ("acl", "train_config.json", "a run of --method rocl / simclr"),
        ("deacl", "acl_config.json", "a run of --method acl / dynacl / air"),
    ],
)
def test_train_resume_refuses_another_methods_run(
    tmp_path: Path,
    image_folder: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
    saved: str,
    message: str,
) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    (out / saved).write_text("{}")
    teacher = ["--teacher", "x"] if method == "deacl" else []
    with pytest.raises(SystemExit):
        main(["train", "--method", method, *teacher, "--data", str(image_folder), "--out",
              str(out), "--resume"])  # fmt: skip
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(["checkpoints", saved])  # no write


def test_train_method_simclr_is_the_simclr_flag(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "simclr"
    assert main(["train", "--method", "simclr", "--data", str(image_folder), "--out", str(out),
                 *TINY_FLAGS]) == 0  # fmt: skip
    assert json.loads((out / "train_config.json").read_text())["adversarial"] is False


@pytest.mark.parametrize("method", ["acl", "dynacl", "air"])
def test_train_method_acl_family(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    out = tmp_path / method
    command = [
        "train", "--method", method, "--data", str(image_folder), "--out", str(out),
        "--width", "4", "--image-size", "16", "--epochs", "2", "--batch-size", "6",
        "--attack-steps", "1", "--augment-period", "1", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert main(command) == 0
    assert f"trained {dict(acl='ACL', dynacl='DynACL', air='AIR')[method]} on 12" in (
        capsys.readouterr().out
    )
    assert RoCLEncoder.from_pretrained(out).config.width == 4  # the adversarial branch
    config = json.loads((out / "acl_config.json").read_text())
    # The method's published settings, then the options given.
    published = {"acl": 0.0, "dynacl": 0.99, "air": 0.0}
    assert (config["method"], config["key_momentum"]) == (method, published[method])
    assert (config["epochs"], config["batch_size"], config["lr"]) == (2, 6, 5.0)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    assert all(math.isfinite(r["loss"]) for r in records)
