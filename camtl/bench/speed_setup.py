"""The speed program's models, batches and steps: what every measurement of ``camtl.bench.speed`` runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset
from transformers import BertConfig

from camtl.data.collation import MultiTaskCollator
from camtl.data.features import TaskDataset, TaskFeatures
from camtl.model import CaMtlConfig, CaMtlModel, load_model
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TRAINABLE_TASKS
from camtl.training.allocator import retain_freed_memory
from camtl.training.precision import autocast
from camtl.training.sampling import build_sampler

THREADS = 2
BATCH_SIZE = 32
MAX_SEQ_LENGTH = 128
EVAL_BATCH_SIZE = 64
MTU_TASKS = tuple(task for task in TRAINABLE_TASKS if task != "wnli")  # T = 8 candidate batches per step
CONTENDERS = {"camtl": "base", "vanilla": "none"}  # contender -> layout
PADDINGS = {  # padding -> (the collator's pad_to, batches grouped by length)
    "fixed": (MAX_SEQ_LENGTH, False),
    "dynamic": (None, False),
    "grouped": (None, True),  # batches drawn as --train_sampling_strategy group_by_length draws them
}
MEMORY_METHOD = "peak RSS (VmHWM) of a fresh subprocess that builds the model and runs two training steps"
REPO_ROOT = Path(__file__).resolve().parents[2]


def backbone_config(shape: str) -> BertConfig:
    """small: the bundled encoder's shape (6 x 384); base: BERT-base (12 x 768)."""
    return BertConfig.from_pretrained(bundled_encoder_path()) if shape == "small" else BertConfig()


def build_model(shape: str, layout: str, tasks: tuple[str, ...] = TRAINABLE_TASKS, **options) -> CaMtlModel:
    """The bundled encoder's weights at the small shape, random init at the base shape (no download).

    ``options`` are CaMtlConfig fields (``conditional_modules`` for the breakdown)."""
    torch.manual_seed(0)
    if shape == "small":
        model = load_model(
            bundled_encoder_path(), list(tasks), layout=layout, max_seq_length=MAX_SEQ_LENGTH, **options
        )
    else:
        config = CaMtlConfig(
            layout=layout,
            backbone=backbone_config(shape).to_dict(),
            tasks=list(tasks),
            max_seq_length=MAX_SEQ_LENGTH,
            **options,
        )
        model = CaMtlModel(config)
    return model.train()


def make_optimizer(model: CaMtlModel) -> torch.optim.Optimizer:
    """The optimizer training uses: the Trainer's default, adamw_torch_fused."""
    return torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, precision: str = "fp32"
) -> torch.Tensor:
    """Forward (under the precision's autocast, as the Trainer runs compute_loss), backward, AdamW; the
    step's loss, detached."""
    with autocast(precision, "cpu"):
        loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def non_embedding_parameters(model: CaMtlModel) -> int:
    """The parameters a token's forward and backward multiply by (6 FLOPs each per token): all but the
    embedding tables, which are looked up."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key != "example_index"}


def drawn_batches(
    train_sets: dict[str, TaskFeatures], sampler_name: str, count: int, group_by_length: bool = False
) -> list[list[dict]]:
    """The first ``count`` batches (lists of examples) that a camtl sampler draws from ``train_sets``."""
    dataset = ConcatDataset([TaskDataset(features, t) for t, features in enumerate(train_sets.values())])
    sampler = build_sampler(sampler_name, [len(f) for f in train_sets.values()], BATCH_SIZE, seed=0)
    if group_by_length:
        sampler.grouped_by_length(torch.cat([features.lengths for features in train_sets.values()]))
    batches = []
    for indices in sampler:
        if len(batches) == count:
            break
        batches.append([dataset[i] for i in indices])
    return batches


def length_sorted_chunks(pool: dict, size: int) -> list[dict]:
    """The pool's rows sorted by length, in chunks of ``size`` each trimmed to its longest example: the
    least padding a no-grad forward over the whole pool can have."""
    lengths = pool["attention_mask"].sum(1)
    order = torch.argsort(lengths, descending=True)
    chunks = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        longest = int(lengths[rows].max())
        chunk = {key: pool[key][rows, :longest] for key in ("input_ids", "token_type_ids", "attention_mask")}
        chunks.append({**chunk, "task_ids": pool["task_ids"][rows]})
    return chunks


def process_memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: across exec it keeps the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(shape: str, layout: str) -> None:
    """Runs in a fresh subprocess: prints {model_rss_mib, peak_rss_mib} for two training steps on a
    random 32 x 128 batch of mixed tasks with random-init weights, with the allocator setting of run.py."""
    retain_freed_memory()
    torch.set_num_threads(THREADS)
    config = CaMtlConfig(
        layout=layout,
        backbone=backbone_config(shape).to_dict(),
        tasks=list(TRAINABLE_TASKS),
        max_seq_length=MAX_SEQ_LENGTH,
    )
    model = CaMtlModel(config).train()
    optimizer = make_optimizer(model)
    task_ids = torch.arange(BATCH_SIZE) % len(TRAINABLE_TASKS)
    batch = {
        "input_ids": torch.randint(1000, config.backbone["vocab_size"], (BATCH_SIZE, MAX_SEQ_LENGTH)),
        "attention_mask": torch.ones(BATCH_SIZE, MAX_SEQ_LENGTH, dtype=torch.long),
        "token_type_ids": torch.zeros(BATCH_SIZE, MAX_SEQ_LENGTH, dtype=torch.long),
        "task_ids": task_ids,
        "labels": torch.zeros(BATCH_SIZE),  # class 0 and score 0 are valid labels for every task
    }
    model_rss = process_memory_mib("VmRSS")
    for _ in range(2):
        training_step(model, optimizer, batch)
    print(json.dumps({"model_rss_mib": model_rss, "peak_rss_mib": process_memory_mib("VmHWM")}))


def measure_memory(shape: str) -> dict:
    result = {}
    for name, layout in CONTENDERS.items():
        code = f"from camtl.bench.speed_setup import memory_probe; memory_probe({shape!r}, {layout!r})"
        process = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False
        )
        if process.returncode != 0:
            raise RuntimeError(f"memory probe {shape} {layout} failed:\n{process.stderr[-2000:]}")
        probe = json.loads(process.stdout.strip().splitlines()[-1])
        probe["step_mib"] = probe["peak_rss_mib"] - probe["model_rss_mib"]
        result[name] = probe
    result["peak_camtl_vs_vanilla"] = result["camtl"]["peak_rss_mib"] / result["vanilla"]["peak_rss_mib"]
    result["step_camtl_vs_vanilla"] = result["camtl"]["step_mib"] / result["vanilla"]["step_mib"]
    return result


# Where a step's time goes: aten op names (self CPU time, so no op is counted twice) by what they do.
PROFILE_GROUPS = (
    ("matrix products", re.compile(r"aten::(mm|addmm|bmm|baddbmm|matmul|linear|_scaled_dot_product.*)$")),
    ("dtype casts and copies", re.compile(r"aten::(_to_copy|copy_|to|clone|contiguous|_copy_from.*)$")),
    ("optimizer", re.compile(r"aten::(_fused_adamw.*|_foreach.*)$")),
    ("norms, softmax, activations", re.compile(r"aten::.*(layer_norm|softmax|gelu|tanh|dropout).*")),
    ("other element-wise and reductions", re.compile(r"aten::.*")),
)


def profile_step(
    shape: str, train_sets: dict[str, TaskFeatures], pad_token_id: int, precision: str = "fp32",
    padding: str = "fixed", steps: int = 4, rows: int = 20,
) -> str:  # fmt: skip
    """torch.profiler tables (ops by self CPU time) of ``steps`` training steps per contender, in
    ``precision`` on ``padding`` batches, each with its time summed by PROFILE_GROUPS."""
    pad_to, grouped = PADDINGS[padding]
    collate = MultiTaskCollator(pad_token_id, pad_to)
    batches = [
        model_inputs(collate(b)) for b in drawn_batches(train_sets, "proportional", steps + 1, grouped)
    ]
    lengths = [b["input_ids"].shape[1] for b in batches[1:]]
    tables = []
    for name, layout in CONTENDERS.items():
        model = build_model(shape, layout)
        optimizer = make_optimizer(model)
        training_step(model, optimizer, batches[0], precision)  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for batch in batches[1:]:
                training_step(model, optimizer, batch, precision)
        events = prof.key_averages()
        title = f"== {name} ({shape}, {precision}, {padding} batches of 32, padded lengths {lengths}) =="
        tables += [title, _time_by_group(events), events.table(sort_by="self_cpu_time_total", row_limit=rows)]
    return "\n".join(tables)


def _time_by_group(events) -> str:
    total = sum(e.self_cpu_time_total for e in events)
    spent = dict.fromkeys([group for group, _ in PROFILE_GROUPS] + ["outside aten ops"], 0.0)
    for event in events:
        group = next((g for g, pattern in PROFILE_GROUPS if pattern.match(event.key)), "outside aten ops")
        spent[group] += event.self_cpu_time_total
    return "\n".join(f"{group:<36}{t / 1e6:>8.2f} s {t / total:>6.1%}" for group, t in spent.items())
