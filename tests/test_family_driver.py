"""The pure pieces of experiments/family.py: the budget -> epochs plan and the results table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
family = pytest.importorskip("family")


def test_epochs_for_the_budget() -> None:
    assert family.epochs_for(384, 24) == 16  # RoCL's published budget
    assert family.epochs_for(384, 6) == 64  # SimCLR
    assert family.epochs_for(384, 17, family.TEACHER_UNITS) == 16  # DeACL after its teacher
    assert family.epochs_for(10, 24) == 1  # never below one epoch


def test_plan_counts_units_and_spends_at_most_the_budget() -> None:
    rows = family.plan(family.FamilyBudget(), ("rocl", "simclr", "deacl", "dynacl++"))
    assert (rows["rocl"]["units_per_epoch"], rows["rocl"]["epochs"]) == (24, 16)
    assert (rows["simclr"]["units_per_epoch"], rows["simclr"]["epochs"]) == (6, 64)
    assert rows["deacl"]["units_per_image"] == 96 + 17 * rows["deacl"]["epochs"]
    for row in rows.values():
        assert 384 - row["units_per_epoch"] < row["units_per_image"] <= 384 or "lpaft_epochs" in row
    plus = rows["dynacl++"]
    assert plus["units_per_image"] <= 384
    assert plus["lpaft_epochs"] >= 1
    assert plus["epochs"] >= 1


def test_table_marks_what_has_not_run() -> None:
    results = {
        "plan": {"rocl": {"units_per_image": 384, "epochs": 16}, "at": {"epochs": 21}},
        "training": {"rocl": {"cpu_seconds": 500.0, "result": {"epoch_seconds": 600.0}}},
        "evaluations": {
            "rocl": {"slf": {"result": {"clean_accuracy": 0.379, "pgd_accuracy": 0.172}}}
        },
    }
    table = family.markdown_table(results, ("rocl", "at"))
    lines = table.splitlines()
    assert lines[2].startswith("| rocl | 384 | 16 | 10.00 | 37.9 | 17.2 | - | not run |")
    assert lines[3].startswith("| at | - | 21 | not run | n/a |")
    assert lines[3].endswith("| not run | not run | not run |")


def test_the_results_keep_every_method_the_run_folder_has_run(tmp_path: Path) -> None:
    assert family.shown_methods(tmp_path, ("deacl", "rocl"), record=True) == ("rocl", "deacl")
    # a later run of one method (or a lane) keeps the others in the results
    assert family.shown_methods(tmp_path, ("at",), record=False) == ("rocl", "deacl", "at")
    assert family.shown_methods(tmp_path, ("simclr",), record=True) == ("rocl", "simclr", "deacl")
    assert family.shown_methods(tmp_path, ("rocl",), record=False) == ("rocl", "simclr", "deacl")


def test_a_second_driver_on_the_same_run_folder_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("fcntl")
    held = family._lock_run(tmp_path)
    try:
        with pytest.raises(SystemExit, match="another family"):
            family._lock_run(tmp_path)
    finally:
        held.close()
    family._lock_run(tmp_path).close()  # free again once the first is gone
