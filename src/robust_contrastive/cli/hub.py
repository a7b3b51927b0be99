"""``robust-contrastive card``, ``push`` and ``list-pretrained``: cards, the Hub, the registry."""

from __future__ import annotations

import argparse

from ._common import _command, _read_json_object, _subcommand


@_command(
    "(re)generate a folder's model card, attaching evaluation reports",
    """Writes FOLDER/README.md from the folder's config and training records, with the
figures of the given reports (refused when a report does not belong to these weights).""",
    """  robust-contrastive card runs/rocl/probe --report report.json --dataset cifar10 \\
      --split 'held-out validation images (500)'""",
)
def _cmd_card(args: argparse.Namespace) -> int:
    from ..model_card import attach_evaluation, write_model_card

    path = None
    for report_path in args.report:
        report = _read_json_object(report_path, "a report of `robust-contrastive evaluate`")
        path = attach_evaluation(
            args.folder,
            report,
            dataset=args.dataset,
            split=args.split,
            description=args.description,
        )
    if path is None:
        path = write_model_card(args.folder, repo_id=args.repo_id, license=args.license)
    print(f"model card: {path}")
    return 0


@_command(
    "upload a save_pretrained folder to the Hugging Face Hub",
    """Regenerates the folder's model card, creates the Hub repo if needed and uploads the
folder (log in first with `hf auth login` or set HF_TOKEN).""",
    """  robust-contrastive push runs/rocl my-org/rocl-resnet18-cifar10
  robust-contrastive push runs/rocl my-org/rocl-resnet18-cifar10 --create-pr""",
)
def _cmd_push(args: argparse.Namespace) -> int:
    from ..hub import push_folder_to_hub
    from ..model_card import write_model_card

    write_model_card(args.folder, repo_id=args.repo_id, license=args.license)
    url = push_folder_to_hub(
        args.folder,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.message,
    )
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0


@_command(
    "list the registered pretrained models",
    """Each name loads offline when bundled (or from the Hub when published), e.g.
RoCLEncoder.from_pretrained(NAME) or RobustLinearProbe.from_pretrained(NAME + "-probe").""",
    "  robust-contrastive list-pretrained",
)
def _cmd_list_pretrained(args: argparse.Namespace) -> int:
    from ..registry import list_pretrained

    entries = list_pretrained()
    if not entries:
        print("no pretrained models are registered in this version.")
    for entry in entries:
        where = "bundled" if entry.bundled else "hub"
        pin = entry.revision[:10] if entry.revision else "unpublished"
        print(f"{entry.name}\t{entry.model_type}\t{entry.repo_id}@{pin} ({where})")
        if entry.description:
            print(f"    {entry.description}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    card = _subcommand(sub, _cmd_card)
    card.add_argument("folder", help="a save_pretrained folder")
    card.add_argument(
        "--report",
        nargs="*",
        default=[],
        help="report JSON files of `robust-contrastive evaluate` to record in the card",
    )
    card.add_argument("--dataset", default="cifar10", help="dataset id of the evaluated images")
    card.add_argument(
        "--split", default="held-out validation images", help="which images were evaluated"
    )
    card.add_argument("--description", default="", help="how the figures were obtained")
    card.add_argument("--repo-id", help="the Hub repo the card is for (loading snippet)")
    card.add_argument("--license", default="mit", help="license id of the weights (mit)")

    push = _subcommand(sub, _cmd_push)
    push.add_argument("folder", help="a save_pretrained folder (its card is regenerated)")
    push.add_argument("repo_id", help="'org/name' of the Hub model repo (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (default: main)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    push.add_argument("--message", default="Upload model with robust-contrastive")
    push.add_argument("--license", default="mit", help="license id of the weights (mit)")

    _subcommand(sub, _cmd_list_pretrained)
