"""``python -m robust_contrastive`` (and ``torchrun -m robust_contrastive``) runs the CLI."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
