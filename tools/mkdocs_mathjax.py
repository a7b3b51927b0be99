"""MkDocs hook: serve MathJax from the installed docs dependencies, never from a CDN.

The ``docs`` extra installs ``django-static-mathjax``, a plain copy of the MathJax 3 distribution
(its top-level package ``mathjax`` holds the files under ``static/mathjax``; Django is not
needed). This hook adds the ``tex-mml-chtml`` component, and the files that component loads on
demand (fonts, TeX extensions, accessibility and menu modules), to the site under
``assets/mathjax/``, so equations render offline, in ``mkdocs serve`` as in ``mkdocs build``.
``mkdocs.yml`` loads ``assets/mathjax/tex-mml-chtml.js`` through ``extra_javascript``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

SITE_FOLDER = "assets/mathjax"
COMPONENT = "tex-mml-chtml.js"
# Folders of MathJax's es5 distribution that the component may load at run time.
LAZY_FOLDERS = ("output/chtml", "input/tex/extensions", "a11y", "ui", "sre", "adaptors")


def mathjax_root() -> Path:
    """The ``es5`` folder of the installed MathJax copy; a PluginError that says what to install."""
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / COMPONENT).is_file():
            return es5
    raise PluginError(
        "MathJax is not installed: the docs serve it from the django-static-mathjax package. "
        'Install the docs dependencies with `pip install -e ".[docs]"`.'
    )


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the MathJax files (and its licence) to the site's files."""
    es5 = mathjax_root()
    sources = [es5 / COMPONENT, es5.parent / "LICENSE"]
    for folder in LAZY_FOLDERS:
        sources.extend(sorted(p for p in (es5 / folder).rglob("*") if p.is_file()))
    for source in sources:
        relative = source.name if source.parent == es5.parent else source.relative_to(es5)
        files.append(
            File.generated(
                config, f"{SITE_FOLDER}/{Path(relative).as_posix()}", abs_src_path=str(source)
            )
        )
    return files
