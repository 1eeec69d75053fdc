"""Smoke test: a few AdamW steps of a CA-MTL base-layout model on one fixed random mixed-task batch.

Builds (a) CA-MTL-mini (the bundled 6-layer encoder, offline) and (b) a random 12-layer, 768-wide BERT
with the base layout, and checks that the loss falls. Exit code 1 if it does not.

    python -m scripts.smoke_train [--steps 20] [--lr 1e-4]   (from the repository root)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from transformers import BertConfig

from camtl.model import CaMtlConfig, CaMtlModel, load_model

TASKS = ["cola", "sst-2", "mrpc", "sts-b", "mnli", "rte"]


def mixed_task_batch(model: CaMtlModel, batch_size: int, seq_length: int) -> dict[str, torch.Tensor]:
    """Random tokens with random lengths; each example gets a task and a label valid for that task."""
    vocab_size = model.config.backbone["vocab_size"]
    lengths = torch.randint(seq_length // 2, seq_length + 1, (batch_size,))
    attention_mask = (torch.arange(seq_length)[None, :] < lengths[:, None]).long()
    task_ids = torch.arange(batch_size) % len(model.config.tasks)
    num_labels = torch.tensor(model.heads.num_labels)[task_ids]
    is_regression = model.heads.is_regression[task_ids]
    class_labels = (torch.rand(batch_size) * num_labels).floor()
    labels = torch.where(is_regression, torch.rand(batch_size) * 5.0, class_labels)
    return {
        "input_ids": torch.randint(1, vocab_size, (batch_size, seq_length)) * attention_mask,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros(batch_size, seq_length, dtype=torch.long),
        "task_ids": task_ids,
        "labels": labels,
    }


def train(name: str, model: CaMtlModel, args: argparse.Namespace) -> bool:
    batch = mixed_task_batch(model, args.batch_size, args.seq_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    losses, start = [], time.perf_counter()
    for _ in range(args.steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = (time.perf_counter() - start) / args.steps
    fell = losses[-1] < losses[0]
    print(
        f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {args.steps} steps"
        f" ({seconds:.2f} s/step, {sum(p.numel() for p in model.parameters()):,} parameters)"
        f" {'falls' if fell else 'DOES NOT FALL'}"
    )
    return fell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=12)
    parser.add_argument("--seq_length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    mini = load_model("CA-MTL-mini", TASKS, max_seq_length=args.seq_length)
    random_base = CaMtlModel(
        CaMtlConfig(
            layout="base", backbone=BertConfig().to_dict(), tasks=TASKS, max_seq_length=args.seq_length
        )
    )
    results = [
        train("CA-MTL-mini (bundled encoder)", mini, args),
        train("base layout, random 12x768", random_base, args),
    ]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
