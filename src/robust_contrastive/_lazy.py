"""Lazy package attributes (PEP 562): a package's public names load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], namespace: dict[str, Any], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load on first use.

    Args:
        package: the package's ``__name__``.
        names: public name -> the submodule (relative to ``package``) that defines it.
        namespace: the package's ``globals()``; a loaded name is stored there, so later accesses
            skip ``__getattr__``.
        public: the package's ``__all__``.

    A submodule is an attribute too (``robust_contrastive.evaluation``), as after an eager
    import; any other name raises ``AttributeError``.
    """

    def getattr_(name: str) -> Any:
        module = names.get(name)
        if module is None:
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise  # a dependency of an existing submodule is missing
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *public})

    return getattr_, dir_
