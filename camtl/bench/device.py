"""The GPU check: precisions agree, the step makes no host sync, and how fast CA-MTL runs on this device.

``python -m camtl.bench device`` (one GPU, a few minutes, random init, no download) trains CA-MTL
(base layout) and the vanilla multitask model at 12 x 768 from one initialisation in fp32, bf16 and fp16
and checks that their losses agree; runs camtl's training step and MT-Uncertainty step under
``torch.cuda.set_sync_debug_mode("error")``; and measures tokens/s, the CA-MTL/vanilla and MT-U/floor
step ratios and the vanilla step's share of the GPU's bf16 peak. It writes ``results/device.json``.
``--reduced`` runs the same code paths on a tiny model, on the CPU when there is no GPU (the tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig

from camtl.data.collation import MultiTaskCollator
from camtl.model import CaMtlConfig, CaMtlModel
from camtl.tasks import TRAINABLE_TASKS
from camtl.training.counters import TaskUsage
from camtl.training.precision import autocast, this_cpu
from camtl.training.sampling import build_sampler
from camtl.training.trainer import CaMtlTrainer

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a substring of the device name.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}
LOSS_TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3}  # relative to the fp32 loss, over the first steps


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    batch: int
    seq: int
    steps: int  # timed steps per contender


FULL = Shape(layers=12, hidden=768, heads=12, batch=32, seq=128, steps=20)
REDUCED = Shape(layers=2, hidden=64, heads=4, batch=4, seq=16, steps=1)
TASKS = [task for task in TRAINABLE_TASKS if task != "wnli"]  # T = 8 candidate batches per MT-U step


def build(shape: Shape, layout: str, device: torch.device) -> CaMtlModel:
    torch.manual_seed(0)
    bert = BertConfig(
        num_hidden_layers=shape.layers, hidden_size=shape.hidden, num_attention_heads=shape.heads,
        intermediate_size=4 * shape.hidden, max_position_embeddings=max(512, shape.seq),
    )  # fmt: skip
    config = CaMtlConfig(layout=layout, backbone=bert.to_dict(), tasks=TASKS, max_seq_length=shape.seq)
    return CaMtlModel(config).to(device).train()


def random_batch(shape: Shape, device: torch.device, rows: int | None = None, seed: int = 0) -> dict:
    """Token ids with padding from half the length up, mixed tasks, labels of each task's kind."""
    generator = torch.Generator().manual_seed(seed)
    rows = rows or shape.batch
    lengths = torch.randint(shape.seq // 2, shape.seq + 1, (rows,), generator=generator)
    examples = [
        {"input_ids": torch.randint(1000, 20000, (int(n),), generator=generator),
         "token_type_ids": torch.zeros(int(n), dtype=torch.long), "label": float(i % 2),
         "task_id": i % len(TASKS), "example_index": i // len(TASKS)}
        for i, n in enumerate(lengths)
    ]  # fmt: skip
    batch = MultiTaskCollator(pad_token_id=0, pad_to_multiple_of=8)(examples)
    return {key: value.to(device) for key, value in batch.items()}


def trainer_for(model: CaMtlModel, precision: str, sampler=None) -> CaMtlTrainer:
    from camtl.training.arguments import CaMtlTrainingArguments

    args = CaMtlTrainingArguments(
        output_dir="/tmp/camtl-device-check", report_to="none", precision=precision,
        use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    trainer = CaMtlTrainer(model=model, args=args, task_sampler=sampler, collator=MultiTaskCollator(0))
    trainer.usage = TaskUsage(TASKS, [10**6] * len(TASKS))
    return trainer


def make_step(model: CaMtlModel, precision: str, device: torch.device, sampler=None):
    """camtl's training step (compute_loss: MT-U selection, counters, divergence watch, forward) + backward
    + fused AdamW, as the Trainer runs it; fp16 with a gradient scaler."""
    trainer = trainer_for(model, precision, sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(batch: dict) -> torch.Tensor:
        with autocast(precision, device.type):
            loss = trainer.compute_loss(model, dict(batch))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def precision_agreement(shape: Shape, device: torch.device, precisions: list[str]) -> dict:
    """Losses of the first steps in each precision from one initialisation and one batch stream."""
    batches = [random_batch(shape, device, seed=s) for s in range(3)]
    losses = {}
    for precision in precisions:
        step = make_step(build(shape, "base", device), precision, device)
        losses[precision] = [float(step(batch)) for batch in batches]
    reference = losses["fp32"]
    result = {"losses": losses}
    for precision in precisions[1:]:
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses[precision], reference, strict=True))
        result[precision] = {"max_relative_difference": worst, "tolerance": LOSS_TOLERANCE[precision],
                             "agrees": worst <= LOSS_TOLERANCE[precision]}  # fmt: skip
    return result


def sync_check(shape: Shape, device: torch.device) -> dict:
    """The bf16 training step and the MT-U step under set_sync_debug_mode("error") (CUDA only)."""
    if device.type != "cuda":
        return {"checked": False, "reason": "needs CUDA"}
    results = {}
    for name, sampler in (("training_step", None), ("mt_uncertainty_step", _mtu_sampler(shape))):
        model = build(shape, "base", device)
        step = make_step(model, "bf16", device, sampler)
        batch = random_batch(shape, device, rows=shape.batch * (len(TASKS) if sampler else 1))
        step(batch)  # the first step allocates optimizer state (host work, not a sync of the step)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(batch)
            results[name] = "no host sync"
        except RuntimeError as error:
            results[name] = f"SYNC: {str(error).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"checked": True, **results}


def _mtu_sampler(shape: Shape):
    return build_sampler("mt-uncertainty", [10**6] * len(TASKS), shape.batch, seed=0)


def time_steps(step, batch: dict, count: int, device: torch.device) -> float:
    """Median seconds of ``count`` steps after two warm-up steps."""
    for _ in range(2):
        step(batch)
    times = []
    for _ in range(count):
        _synchronize(device)
        start = time.perf_counter()
        step(batch)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(shape: Shape, device: torch.device, precision: str) -> dict:
    batch = random_batch(shape, device)
    seconds = {}
    for name, layout in (("vanilla", "none"), ("camtl", "base")):
        step = make_step(build(shape, layout, device), precision, device)
        seconds[name] = time_steps(step, batch, shape.steps, device)
    pool = random_batch(shape, device, rows=shape.batch * len(TASKS))
    mtu_step = make_step(build(shape, "base", device), precision, device, _mtu_sampler(shape))
    seconds["mt_uncertainty"] = time_steps(mtu_step, pool, shape.steps, device)
    tokens = shape.batch * shape.seq
    result = {
        "precision": precision,
        "seconds_per_step": seconds,
        "tokens_per_second": {name: tokens / value for name, value in seconds.items()},
        "camtl_vs_vanilla": seconds["camtl"] / seconds["vanilla"],
        "mtu_vs_floor": seconds["mt_uncertainty"] / seconds["camtl"],
    }
    peak = next((value for key, value in BF16_PEAK.items() if key in _device_name(device)), None)
    if peak is not None and precision == "bf16":
        result["vanilla_fraction_of_bf16_peak"] = step_flops(shape) / seconds["vanilla"] / peak
    return result


def step_flops(shape: Shape) -> float:
    """Training FLOPs of a vanilla step: 6 x layer parameters x tokens + attention's 12 x n x d x L^2 x B."""
    per_layer = 12 * shape.hidden**2
    tokens = shape.batch * shape.seq
    attention = 12 * shape.layers * shape.hidden * shape.seq * tokens
    return 6 * shape.layers * per_layer * tokens + attention


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def measure(shape: Shape, device: torch.device) -> dict:
    if device.type == "cuda":
        precisions = ["fp32", "bf16", "fp16"]
    else:  # the CPU path of the check: bf16 only where run.py would allow it
        precisions = ["fp32", "bf16"] if this_cpu().native_bf16 else ["fp32"]
    return {
        "device": _device_name(device),
        "torch": torch.__version__,
        "shape": vars(shape),
        "precision_agreement": precision_agreement(shape, device, precisions),
        "sync_check": sync_check(shape, device),
        "throughput": throughput(shape, device, "bf16" if device.type == "cuda" else "fp32"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reduced", action="store_true", help="a tiny model: the code paths, not the numbers"
    )
    parser.add_argument("--output", type=Path, default=Path("results/device.json"))


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = measure(REDUCED if args.reduced or device.type == "cpu" else FULL, device)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result
