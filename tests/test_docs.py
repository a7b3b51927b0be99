"""Every ```python block of README.md and docs/*.md runs, so the docs cannot drift from the code.

One test per file (ids are the file names). The blocks of one file run in order in one shared
namespace, as a reader would paste them, in a temporary working directory, offline
(``HF_HUB_OFFLINE=1``) and with matplotlib's Agg backend. A block directly preceded by the line
``<!-- docs-test: skip (reason) -->`` is not run: use it only for what cannot run on a CPU
offline (torchrun, a GPU, pushing to or downloading from the Hub). A failure names the file and
the line of the failing block, and the traceback points at the Markdown line itself.

Python fences must be spelled ```python: ```py and ```python3 blocks would not be run here, so
they fail the test.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SKIP_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*skip\b(.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
PYTHON_INFO = re.compile(r"^\{?\s*\.?(?P<lang>[\w+-]+)")
# Fence languages that look like Python but would not be run: refused, so nothing hides.
HIDDEN_PYTHON = {"py", "python3", "py3"}


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    lang: str
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None  # None: run it


def parse_blocks(text: str) -> tuple[list[Block], list[str]]:
    """The fenced code blocks of ``text`` and the problems found (bad fences, stray markers)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        marker = SKIP_MARKER.match(lines[i])
        opening = FENCE.match(lines[i])
        if marker is not None:
            reason = marker.group(1).strip().strip("()").strip()
            nxt = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            lang = _lang(nxt.group("info")) if nxt is not None else ""
            if lang != "python":
                problems.append(
                    f"line {i + 1}: a docs-test skip marker must directly precede a ```python fence"
                )
            elif not reason:
                problems.append(f"line {i + 1}: give the skip marker a reason: skip (why)")
        if opening is None:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        lang = _lang(opening.group("info"))
        end = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            problems.append(f"line {i + 1}: the ``` fence opened here is never closed")
        body = [
            ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : end]
        ]
        if lang in HIDDEN_PYTHON:
            problems.append(
                f"line {i + 1}: spell the fence ```python (```{lang} blocks are not run by "
                "tests/test_docs.py)"
            )
        previous = SKIP_MARKER.match(lines[i - 1]) if i > 0 else None
        skip = None
        if previous is not None:
            skip = previous.group(1).strip().strip("()").strip() or "no reason given"
        blocks.append(Block(lang=lang, line=i + 1, code="\n".join(body) + "\n", skip_reason=skip))
        i = end + 1
    return blocks, problems


def _lang(info: str) -> str:
    match = PYTHON_INFO.match(info.strip())
    return match.group("lang").lower() if match else ""


def run_blocks(path: Path, blocks: list[Block]) -> list[tuple[int, float]]:
    """Run the python blocks in order in one namespace; (line, seconds) per block that ran.

    Raises:
        AssertionError: naming the file and line of the first failing block, with its traceback.
    """
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": str(path)}
    timings: list[tuple[int, float]] = []
    for block in blocks:
        if block.lang != "python" or block.skip_reason is not None:
            continue
        # Pad with blank lines so that tracebacks give the line numbers of the Markdown file.
        source = "\n" * block.line + block.code
        start = time.perf_counter()
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            details = "".join(traceback.format_exception(error))
            raise AssertionError(
                f"{path.relative_to(ROOT)}: the ```python block at line {block.line} failed "
                f"({type(error).__name__}: {error})\n{details}"
            ) from None
        finally:
            _close_figures()
        timings.append((block.line, time.perf_counter() - start))
    return timings


def _close_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture
def docs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary working directory, offline Hub access and a non-interactive matplotlib.

    Process-wide state that a block may change (environment variables, torch's deterministic
    mode, thread count, default dtype and global RNG, warning filters, models registered at run
    time) is restored afterwards, so that the blocks of one file cannot change the tests that run
    after them.
    """
    import torch

    from robust_contrastive import registry

    runtime_registry = dict(registry._RUNTIME)
    environ = dict(os.environ)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    rng = torch.random.get_rng_state()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    monkeypatch.setattr(sys, "argv", ["docs-block"])
    with warnings.catch_warnings():
        yield tmp_path
    os.environ.clear()
    os.environ.update(environ)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.random.set_rng_state(rng)
    registry._RUNTIME.clear()
    registry._RUNTIME.update(runtime_registry)


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_doc_file_python_blocks_run(path: Path, docs_env: Path) -> None:
    blocks, problems = parse_blocks(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)
    timings = run_blocks(path, blocks)
    python_blocks = [b for b in blocks if b.lang == "python"]
    assert len(timings) == sum(b.skip_reason is None for b in python_blocks)
    for line, seconds in timings:  # shown with pytest -o log_cli=true --log-cli-level=INFO
        logger.info("%s: block at line %d ran in %.1f s", path.name, line, seconds)


def test_parser_finds_blocks_skips_and_bad_fences() -> None:
    text = "\n".join(
        [
            "# Title",  # 1
            "```python",  # 2
            "x = 1",  # 3
            "```",  # 4
            "<!-- docs-test: skip (needs a GPU) -->",  # 5
            "```python",  # 6
            "y = 2",  # 7
            "```",  # 8
            "!!! note",  # 9
            "    ```python",  # 10
            "    z = x + 1",  # 11
            "    ```",  # 12
            "```py",  # 13
            "hidden = True",  # 14
            "```",  # 15
            "```bash",  # 16
            "echo hi",  # 17
            "```",  # 18
        ]
    )
    blocks, problems = parse_blocks(text)
    assert [(b.lang, b.line, b.skip_reason) for b in blocks] == [
        ("python", 2, None),
        ("python", 6, "needs a GPU"),
        ("python", 10, None),
        ("py", 13, None),
        ("bash", 16, None),
    ]
    assert blocks[2].code == "z = x + 1\n"
    assert len(problems) == 1
    assert "line 13" in problems[0]
    assert "```python" in problems[0]


def test_parser_refuses_stray_or_unexplained_skip_markers() -> None:
    _, problems = parse_blocks("<!-- docs-test: skip (why) -->\n\n```python\nx = 1\n```\n")
    assert len(problems) == 1
    assert "directly precede" in problems[0]
    _, problems = parse_blocks("<!-- docs-test: skip -->\n```python\nx = 1\n```\n")
    assert len(problems) == 1
    assert "reason" in problems[0]


def test_failing_block_reports_its_markdown_line(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "example-for-test.md"  # only a name: the file is never written
    blocks, _ = parse_blocks("Intro\n\n```python\na = 1\nb = a / 0\n```\n")
    with pytest.raises(AssertionError, match=r"block at line 3 failed \(ZeroDivisionError") as info:
        run_blocks(doc, blocks)
    assert 'example-for-test.md", line 5' in str(info.value)


def test_site_loads_no_script_or_style_from_another_host() -> None:
    # Offline readers must get the maths and the fonts: MathJax is served by the site itself
    # (tools/mkdocs_mathjax.py), and the theme uses system fonts instead of Google Fonts.
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    remote = [ln.strip() for ln in config.splitlines() if re.match(r"^\s*-\s*['\"]?https?://", ln)]
    assert not remote, f"mkdocs.yml loads files from another host: {remote}"
    assert re.search(r"^\s*font:\s*false\s*$", config, re.MULTILINE), "set theme.font: false"
    assert "tools/mkdocs_mathjax.py" in config
