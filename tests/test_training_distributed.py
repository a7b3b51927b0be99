"""Distributed training (DistributedDataParallel + gathered negatives) on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torchvision.io import write_png

from robust_contrastive import RobustLinearProbe, RoCLEncoder, RoCLTrainer, TrainConfig
from robust_contrastive.evaluation import ProbeNotLearningWarning
from robust_contrastive.models import ProjectionHead
from robust_contrastive.training import distributed, load_checkpoint

WORLD, BATCH = 2, 4  # two processes of 4 images: the union is one batch of 8
CONFIG = TrainConfig(
    width=8,
    projection_hidden_dim=16,
    projection_dim=8,
    epochs=1,
    batch_size=BATCH,
    warmup_epochs=0,
    attack_steps=1,
    image_size=16,
    checkpoint_every=1,
    progress=False,
    device="cpu",
)
VARIANTS: dict[str, dict[str, Any]] = {
    "rocl": {},  # two DDP forwards (3 views, then the regulariser's) before one backward
    "rocl-shared": {"regularizer_forward": "shared"},
    "simclr": {"adversarial": False},
}


def _union_views() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """t(x), t'(x), t(x)^adv of the union batch (WORLD * BATCH, 3, 16, 16)."""
    g = torch.Generator().manual_seed(0)
    t1, t2, noise = (torch.rand(WORLD * BATCH, 3, 16, 16, generator=g) for _ in range(3))
    return t1, t2, (t1 + (noise - 0.5) * 0.06).clamp(0, 1)


class _GivenViews:
    """Stands in for the augmentation: returns t(x), then t'(x), whatever the batch."""

    def __init__(self, t1: torch.Tensor, t2: torch.Tensor) -> None:
        self.views = (t1, t2)
        self.calls = 0

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        view = self.views[self.calls % 2]
        self.calls += 1
        return view


class _GivenAdversary:
    """Stands in for the step's attack: returns the given t(x)^adv."""

    def __init__(self, adv: torch.Tensor) -> None:
        self.adv = adv

    def perturb(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adv


def _one_step(trainer: RoCLTrainer, views: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """compute_loss on given views (BatchNorm on running statistics), backward, optimiser step."""
    t1, t2, adv = views
    trainer.augment = _GivenViews(t1, t2)  # type: ignore[assignment]
    trainer._step_attack = lambda: _GivenAdversary(adv)  # type: ignore[method-assign,assignment]
    trainer.encoder.eval()  # exact comparison: no per-process batch statistics
    trainer.projector.eval()
    loss, parts = trainer.compute_loss(t1)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    named = [*trainer.encoder.named_parameters(), *trainer.projector.named_parameters()]
    grads = {name: p.grad.clone() for name, p in named if p.grad is not None}
    trainer.optimizer.step()
    weights = {name: p.detach().clone() for name, p in named}
    return {"loss": loss.detach(), "parts": parts, "grads": grads, "weights": weights}


def _step_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, changes in VARIANTS.items():
            trainer = RoCLTrainer(replace(CONFIG, **changes))
            assert isinstance(trainer._model, DistributedDataParallel)
            assert trainer.attack.encoder is trainer.encoder  # the attack bypasses DDP
            local = tuple(v[rank * BATCH : (rank + 1) * BATCH] for v in _union_views())
            results[name] = _one_step(trainer, local)

        # Train mode with the real augmentation and attack: two DDP steps run, the processes'
        # augmentation streams differ, and their weights stay identical.
        trainer = RoCLTrainer(CONFIG)
        images = torch.rand(BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        for _ in range(2):
            loss, _ = trainer.compute_loss(images)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            trainer.optimizer.step()
        results["train"] = {
            "weights": {n: p.detach().clone() for n, p in trainer.encoder.named_parameters()},
            "view": trainer.augment(images, trainer.generator),
        }

        # SyncBatchNorm runs on CUDA only: refused, on every process, before any collective.
        try:
            RoCLTrainer(replace(CONFIG, sync_batchnorm=True))
        except ValueError as err:
            results["sync_batchnorm_error"] = str(err)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_one_step_equals_one_process_on_the_union(tmp_path: Path) -> None:
    # fork (Linux) skips re-importing torch in the workers: ~1 s instead of ~12 s for spawn.
    start_method = "fork" if sys.platform == "linux" else "spawn"
    args = (str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(_step_worker, args=args, nprocs=WORLD, join=True, start_method=start_method)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    for name, changes in VARIANTS.items():
        reference = _one_step(RoCLTrainer(replace(CONFIG, **changes)), _union_views())
        # Each process's loss is the mean over its anchors against every process's negatives:
        # their mean is the union's loss, and DDP's mean of their gradients is its gradient.
        mean_loss = sum(r[name]["loss"] for r in ranks) / WORLD
        torch.testing.assert_close(mean_loss, reference["loss"], rtol=1e-5, atol=1e-6)
        mean_parts = sum(r[name]["parts"] for r in ranks) / WORLD
        torch.testing.assert_close(mean_parts, reference["parts"], rtol=1e-5, atol=1e-6)
        for result in ranks:
            assert result[name]["grads"].keys() == reference["grads"].keys()
            assert len(reference["grads"]) == len(reference["weights"])  # every parameter
            for key, grad in reference["grads"].items():
                torch.testing.assert_close(
                    result[name]["grads"][key], grad, rtol=1e-4, atol=1e-6, msg=f"{name} {key}"
                )
            for key, weight in reference["weights"].items():
                torch.testing.assert_close(
                    result[name]["weights"][key], weight, rtol=1e-5, atol=1e-6, msg=key
                )

    first, second = (r["train"] for r in ranks)
    for key, weight in first["weights"].items():
        assert torch.equal(weight, second["weights"][key]), key
    assert not torch.equal(first["view"], second["view"])  # generators seeded seed + 1 + rank
    for result in ranks:
        assert "needs CUDA" in result["sync_batchnorm_error"]


def _rank_zero_probe_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        if rank == 0:  # a single-process loop inside the group: it must not wait for rank 1
            g = torch.Generator().manual_seed(0)
            images, labels = torch.rand(8, 3, 16, 16, generator=g), torch.arange(8) % 2
            encoder = RoCLEncoder("resnet18", width=4)
            probe = RobustLinearProbe(encoder, num_classes=2, epochs=2, batch_size=4)
            with warnings.catch_warnings():  # random features may be at chance: not the point
                warnings.simplefilter("ignore", ProbeNotLearningWarning)
                history = probe.fit(images, labels, val=(images, labels), progress=False).history
            torch.save({"epochs": len(history)}, f"{out_dir}/rank0.pt")
        dist.barrier()  # rank 1 arrives here at once; rank 0 after its fit
    finally:
        dist.destroy_process_group()


def test_a_single_process_fit_inside_a_process_group_stays_local(tmp_path: Path) -> None:
    start_method = "fork" if sys.platform == "linux" else "spawn"
    args = (str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(
        _rank_zero_probe_worker, args=args, nprocs=WORLD, join=True, start_method=start_method
    )
    assert torch.load(tmp_path / "rank0.pt", weights_only=True) == {"epochs": 2}


# ---------------------------------------------------------------- helpers on one process
def test_shards_are_distributed_sampler_slices_and_steps_match_one_process() -> None:
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    shards = [distributed.shard_indices(order, r, 3) for r in range(3)]
    for r, shard in enumerate(shards):
        sampler = DistributedSampler(
            range(23), num_replicas=3, rank=r, shuffle=False, drop_last=True
        )
        assert shard.tolist() == order[list(sampler)].tolist()
    # Step s's batches of 2 per process are together one process's batch of 6.
    for s in range(7 // 2):
        union = torch.cat([shard[s * 2 : (s + 1) * 2] for shard in shards])
        assert sorted(union.tolist()) == sorted(order[s * 6 : (s + 1) * 6].tolist())
    with pytest.raises(ValueError, match="rank"):
        distributed.shard_indices(order, 3, 3)


def test_single_process_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_main_process()
    assert distributed.setup_from_env() is False  # nothing to set up
    assert not dist.is_initialized()
    x = torch.arange(3.0)
    assert distributed.all_reduce_mean(x) is x
    assert distributed.all_gather_objects(5) == [5]
    distributed.barrier()
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        distributed.setup_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="not an integer"):
        distributed.setup_from_env()


def test_sync_batchnorm_is_validated() -> None:
    assert TrainConfig().sync_batchnorm is False
    with pytest.raises(ValueError, match="sync_batchnorm"):
        TrainConfig(sync_batchnorm="yes")  # type: ignore[arg-type]
    RoCLTrainer(replace(CONFIG, sync_batchnorm=True))  # one process: no effect


# ---------------------------------------------------------------- torchrun end to end
# Under torchrun, fail any process other than rank 0 that opens a file under OUT for writing,
# creates, renames or removes anything there; then run the CLI (optionally crashing after the
# checkpoint of epoch 1, as test_training's resume test does).
_LAUNCHER = textwrap.dedent(
    """
    import os, sys
    OUT = os.path.realpath(sys.argv[1])
    CRASH = sys.argv[2] == "crash"
    RANK = int(os.environ["RANK"])
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def under_out(path):
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(OUT)
        except TypeError:
            return False

    def audit(event, args):
        if RANK == 0:
            return
        bad = (
            (event == "open" and under_out(args[0]) and (
                (isinstance(args[1], str) and any(c in args[1] for c in "wax+"))
                or (isinstance(args[2], int) and args[2] & WRITE)))
            or (event in ("os.mkdir", "os.remove", "os.rmdir") and under_out(args[0]))
            or (event == "os.rename" and (under_out(args[0]) or under_out(args[1])))
        )
        if bad:
            raise PermissionError(f"rank {RANK} wrote under OUT: {event} {args[:2]}")

    sys.addaudithook(audit)
    from robust_contrastive.cli import main
    from robust_contrastive.training import TrainingLoop
    if CRASH:
        original = TrainingLoop.save_checkpoint
        def crash_after_epoch_one(self):
            path = original(self)
            if self.epoch == 1:
                raise KeyboardInterrupt("simulated crash")
            return path
        TrainingLoop.save_checkpoint = crash_after_epoch_one
    raise SystemExit(main(sys.argv[3:]))
    """
)
E2E_FLAGS = [
    "--width", "4", "--projection-hidden-dim", "16", "--projection-dim", "8", "--epochs", "2",
    "--batch-size", "4", "--image-size", "16", "--attack-steps", "1", "--warmup-epochs", "1",
    "--checkpoint-every", "1", "--no-progress", "--seed", "3",
]  # fmt: skip


def _torchrun(tmp_path: Path, out: Path, data: Path, *extra: str, mode: str = "module") -> str:
    """Run ``train`` under torchrun on 2 CPU processes: ``mode`` "module" runs ``-m
    robust_contrastive``; "audited" and "crash" run it through the launcher above."""
    if mode == "module":
        program = ["-m", "robust_contrastive"]
    else:
        launcher = tmp_path / "launch.py"
        launcher.write_text(_LAUNCHER)
        program = [str(launcher), str(out), mode]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "--tee", "3", "--log-line-prefix-template", "[rank${rank}] ", *program,
        "train", "--data", str(data), "--out", str(out), *E2E_FLAGS, *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo on CPUs
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    output = done.stdout + done.stderr
    assert "wrote under OUT" not in output, output
    assert (done.returncode != 0) == (mode == "crash"), output
    return output


def _weights(out: Path) -> dict[str, torch.Tensor]:
    encoder = RoCLEncoder.from_pretrained(out)
    projector = ProjectionHead.from_pretrained(out / "projector")
    return {
        **{f"e.{k}": v for k, v in encoder.state_dict().items()},
        **{f"p.{k}": v for k, v in projector.state_dict().items()},
    }


@pytest.mark.slow
def test_torchrun_cli_rank_zero_writes_and_resume(tmp_path: Path) -> None:
    data = tmp_path / "images"  # 2 classes x 9 images: 9 per process, 2 steps of 4 per epoch
    g = torch.Generator().manual_seed(0)
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        for i in range(9):
            image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
            write_png(image, str(data / name / f"{i}.png"))

    # torchrun -m robust_contrastive train: rank 0 alone prints, logs and writes.
    reference = tmp_path / "reference"
    lines = _torchrun(tmp_path, reference, data).splitlines()
    summaries = [line for line in lines if "encoder:" in line]
    assert len(summaries) == 1
    assert summaries[0].startswith("[rank0]")
    assert any("distributed training: 2 processes (gloo)" in line for line in lines)
    assert not any(line.startswith("[rank1]") and " INFO " in line for line in lines)
    metrics = (reference / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2
    state = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert state["world_size"] == 2
    assert len(state["rank_generators"]) == 2
    assert not torch.equal(state["rank_generators"][0], state["rank_generators"][1])

    # Crash after the epoch-1 checkpoint, then --resume on both processes: the same weights as
    # the uninterrupted run. The launcher fails rank 1 if it writes anything under OUT.
    resumed = tmp_path / "resumed"
    _torchrun(tmp_path, resumed, data, mode="crash")
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (resumed / "model.safetensors").exists()
    output = _torchrun(tmp_path, resumed, data, "--resume", mode="audited")
    assert "resumed from" in output
    expected, got = _weights(reference), _weights(resumed)
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    timing = ("images_per_s", "seconds")
    assert [
        {k: v for k, v in json.loads(line).items() if k not in timing}
        for line in (resumed / "metrics.jsonl").read_text().splitlines()
    ] == [{k: v for k, v in json.loads(line).items() if k not in timing} for line in metrics]

    # A 2-process checkpoint does not resume on one process (the batch per step would change).
    config = TrainConfig.from_dict(json.loads((reference / "train_config.json").read_text()))
    with pytest.raises(ValueError, match="2 process"):
        RoCLTrainer(config, resumed).fit(torch.zeros(18, 3, 16, 16), resume=True)
