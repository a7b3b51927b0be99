"""Run ``robust-contrastive quickstart`` and paste what it prints into docs/quickstart.md.

The block between the markers ``<!-- quickstart-output:start -->`` and
``<!-- quickstart-output:end -->`` of docs/quickstart.md is replaced by: how the run was made
(command, version, commit, CPU cores, GPU or not, wall time), the table and notes it printed,
word for word, and one sentence comparing RoCL with SimCLR, written from the run's
``quickstart.json``. Nothing else of the page is touched.

Usage (from the repository root)::

    python tools/update_quickstart_docs.py                 # runs the quickstart (minutes on CPU)
    python tools/update_quickstart_docs.py --stdout out.txt --run quickstart-run --seconds 160
        # reuse a run: its captured stdout and its output folder (and its measured wall time)

``--note TEXT`` adds a remark on the run's conditions (e.g. a machine shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
START = "<!-- quickstart-output:start -->"
END = "<!-- quickstart-output:end -->"
COMMAND = ["robust-contrastive", "quickstart"]
WIDTH = 96  # the page's prose is wrapped at about this width


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if dirty else commit


def _environment() -> tuple[str, bool]:
    """The installed version and whether torch sees a GPU (asked in a subprocess: this script
    itself imports neither)."""
    code = (
        "import torch, robust_contrastive; "
        "print(robust_contrastive.__version__, torch.cuda.is_available())"
    )
    version, gpu = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return version, gpu == "True"


def _run_quickstart(folder: Path) -> tuple[str, float]:
    """Run the quickstart in ``folder``; return its stdout and wall-clock seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        [*COMMAND, "--no-progress"], cwd=folder, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the quickstart failed ({result.returncode}):\n{result.stderr}")
    return result.stdout, seconds


def _excerpt(stdout: str) -> str:
    """The printed summary: from the "Quickstart:" line to the line defining train images/s."""
    lines = stdout.splitlines()
    try:
        first = next(i for i, line in enumerate(lines) if line.startswith("Quickstart:"))
        last = next(i for i, line in enumerate(lines) if line.startswith("train images/s:"))
    except StopIteration:
        sys.exit("the quickstart's output has no table: was it produced by this version?")
    return "\n".join(lines[first : last + 1])


def _block(stdout: str, run: Path, seconds: float, note: str | None) -> str:
    summary = json.loads((run / "quickstart.json").read_text())
    rows = {row["method"]: row for row in summary["rows"]}
    version, gpu = _environment()
    cores = os.cpu_count()
    rocl, simclr = rows["RoCL"], rows["SimCLR"]
    return "\n".join(
        [
            START,
            "<!-- written by `python tools/update_quickstart_docs.py`: do not edit by hand -->",
            "",
            textwrap.fill(
                f"One run of `{' '.join(COMMAND)}` (version {version} at commit "
                f"{_git_commit()}, seed 0, {cores} CPU cores, {'a GPU' if gpu else 'no GPU'}; "
                f"{seconds:.0f} s wall clock{'; ' + note if note else ''}) printed:",
                WIDTH,
            ),
            "",
            "```text",
            _excerpt(stdout),
            "```",
            "",
            textwrap.fill(
                f"In this run RoCL's probe keeps {100 * rocl['pgd20']:.1f} % of the held-out "
                f"images under PGD-20 against {100 * simclr['pgd20']:.1f} % for SimCLR's, at a "
                f"clean accuracy of {100 * rocl['clean']:.1f} % against "
                f"{100 * simclr['clean']:.1f} % (chance: {100 * summary['chance']:.1f} %).",
                WIDTH,
            ),
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stdout", type=Path, help="captured stdout of a quickstart run")
    parser.add_argument("--run", type=Path, help="that run's output folder (with --stdout)")
    parser.add_argument("--seconds", type=float, help="that run's wall-clock time (--stdout)")
    parser.add_argument("--note", help="a remark on the conditions of the run, quoted as given")
    args = parser.parse_args()
    text = DOC.read_text()
    if START not in text or END not in text:
        sys.exit(f"{DOC} lacks the markers {START} and {END}.")
    if args.stdout is not None:
        if args.run is None or args.seconds is None:
            sys.exit("--stdout needs --run (the run's output folder) and --seconds.")
        block = _block(args.stdout.read_text(), args.run, args.seconds, args.note)
    else:
        with tempfile.TemporaryDirectory() as folder:
            stdout, seconds = _run_quickstart(Path(folder))
            block = _block(stdout, Path(folder) / "quickstart-run", seconds, args.note)
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(before + block + after)
    print(f"updated {DOC.relative_to(ROOT)}:\n{block}")


if __name__ == "__main__":
    main()
