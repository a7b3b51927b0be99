"""Draw the figures of a CIFAR-10 reproduction from its results file.

``experiments/reproduce_cifar10.py`` records in its results JSON everything its figures show (the
training histories, the smoothed accuracy against the number of samples, the 2-D embedding of
clean images and their adversaries); this script draws them with matplotlib
(``pip install robust-contrastive[plots]``). The figures of the results page (docs/results.md)
are regenerated from the committed results with::

    python experiments/plot_cifar10.py experiments/results/cifar10_cpu.json \\
        --out docs/assets/results

An ablation's results (``cifar10_cpu_TAG.json``) take ``--tag TAG``: figures ``NAME-TAG.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch


def plots(folder: Path, results: dict[str, Any], tag: str) -> list[str]:
    """Write the figures into ``folder`` (``NAME.png``, ``NAME-TAG.png`` for another tag)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "the plots need matplotlib: pip install 'robust-contrastive[plots]'"
        ) from err
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    suffix = "" if tag == "main" else f"-{tag}"

    def save(fig: Any, name: str) -> None:
        path = folder / f"{name}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

    histories = results["training"]
    panels = [m for m in ("simclr", "rocl", "at") if m in histories]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, method in zip(axes[0], panels, strict=True):
        h = histories[method]["history"]
        epochs = [e["epoch"] for e in h]
        if method == "at":
            ax.plot(epochs, [e["loss"] for e in h], marker="o", label="train cross-entropy (PGD)")
            ax.set(xlabel="epoch", ylabel="loss", title="Supervised PGD-AT")
            right = ax.twinx()
            right.plot(
                epochs,
                [100 * e["val_clean_acc"] for e in h],
                "s-",
                color="C1",
                label="select: clean",
            )
            right.plot(
                epochs,
                [100 * e["val_adv_acc"] for e in h],
                "^-",
                color="C2",
                label="select: PGD-10",
            )
            right.set_ylabel("selection-split accuracy (%)")
            # one legend for both axes, where no curve runs (each axis's own one overlapped)
            lines = ax.get_lines() + right.get_lines()
            right.legend(
                lines, [line.get_label() for line in lines], loc="center right", fontsize=8
            )
        else:
            ax.plot(epochs, [e["loss"] for e in h], marker="o", label="total")
            if method == "rocl":
                ax.plot(
                    epochs, [e["loss_contrastive"] for e in h], marker=".", label="eq. 6, 1st term"
                )
            ax.set(
                xlabel="epoch",
                ylabel="loss",
                title="SimCLR" if method == "simclr" else "RoCL (3 views + 1/256 regulariser)",
            )
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save(fig, "training_curves")

    if "smoothing" in results:
        curve = results["smoothing"]["accuracy_vs_samples"]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.plot([int(k) for k in curve], [100 * v for v in curve.values()], marker="o")
        ax.set(
            xscale="log",
            xlabel="transformation samples",
            ylabel="clean accuracy (%)",
            title="RoCL: transformation smoothing (eq. 8)",
        )
        ax.set_xticks([int(k) for k in curve], [str(k) for k in curve])
        fig.tight_layout()
        save(fig, "smoothing_samples")

    if "embedding" in results:
        methods = [m for m in ("simclr", "rocl") if m in results["embedding"]]
        fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4.4), squeeze=False)
        for ax, method in zip(axes[0], methods, strict=True):
            e = results["embedding"][method]
            clean = torch.tensor(e["clean"])
            adv = torch.tensor(e["adversarial"])
            labels = torch.tensor(e["labels"])
            ax.scatter(clean[:, 0], clean[:, 1], c=labels, cmap="tab10", s=8, marker="o")
            ax.scatter(adv[:, 0], adv[:, 1], c=labels, cmap="tab10", s=10, marker="x")
            for i in range(0, len(clean), 10):  # one pair in ten, joined
                ax.plot([clean[i, 0], adv[i, 0]], [clean[i, 1], adv[i, 1]], color="0.6", lw=0.5)
            ax.set_title(
                f"{'RoCL' if method == 'rocl' else 'SimCLR'}: o clean, x adversary "
                f"(cos {e['mean_cosine_clean_adv']:.2f})"
            )
            ax.set(xlabel="PC 1 of clean features", ylabel="PC 2")
        fig.tight_layout()
        save(fig, "embedding")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a results file of reproduce_cifar10.py")
    parser.add_argument("--out", type=Path, required=True, help="folder of the figures")
    parser.add_argument("--tag", default="main", help="the run's --tag (names the figures)")
    args = parser.parse_args(argv)
    for path in plots(args.out, json.loads(args.results.read_text()), args.tag):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
