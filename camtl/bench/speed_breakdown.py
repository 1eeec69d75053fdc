"""Where CA-MTL's extra time per training step goes: ``python -m camtl.bench speed --breakdown SHAPE``.

The base layout is timed against the vanilla model with all its conditional modules and with each one
alone (``conditional_modules``, the ablation option), on the same batches, alternated in rounds like
every speed measurement. The cost of a module is the median over rounds of t_only_module / t_vanilla
- 1: the fraction of a vanilla step that the module adds by itself. The costs need not add up to
CA-MTL's: each is a median of its own noisy rounds.
"""

from __future__ import annotations

import statistics

from camtl.bench.speed_report import alternate, paired_ratio, paired_ratio_quartiles
from camtl.bench.speed_setup import (
    BATCH_SIZE,
    MAX_SEQ_LENGTH,
    build_model,
    drawn_batches,
    make_optimizer,
    model_inputs,
    training_step,
)
from camtl.data.collation import MultiTaskCollator
from camtl.data.features import TaskFeatures
from camtl.model.configuration import CONDITIONAL_MODULES


def breakdown_contenders() -> dict[str, dict]:
    """contender -> build_model options: vanilla, CA-MTL, and CA-MTL with each conditional module alone."""
    contenders = {"vanilla": {"layout": "none"}, "camtl": {"layout": "base"}}
    for module in CONDITIONAL_MODULES:
        contenders[f"only_{module}"] = {"layout": "base", "conditional_modules": [module]}
    return contenders


def measure_breakdown(
    shape: str, train_sets: dict[str, TaskFeatures], pad_token_id: int, rounds: int
) -> dict:
    """Each contender's step time and ratio to vanilla, and each module's cost (batches padded to 128)."""
    models = {name: build_model(shape, **options) for name, options in breakdown_contenders().items()}
    optimizers = {name: make_optimizer(model) for name, model in models.items()}
    collate = MultiTaskCollator(pad_token_id, MAX_SEQ_LENGTH)
    batches = [model_inputs(collate(e)) for e in drawn_batches(train_sets, "proportional", rounds + 1)]

    def step(name: str):  # a training set smaller than the rounds' batches gives fewer: they repeat
        return lambda i: training_step(models[name], optimizers[name], batches[i % len(batches)])

    seconds = alternate({name: step(name) for name in models}, rounds)
    vanilla = seconds["vanilla"]
    result = {"shape": shape, "batch_size": BATCH_SIZE, "rounds": rounds, "contenders": {}, "module_cost": {}}
    for name, times in seconds.items():
        result["contenders"][name] = {
            "median_s": statistics.median(times),
            "vs_vanilla": paired_ratio(times, vanilla),
            "vs_vanilla_quartiles": paired_ratio_quartiles(times, vanilla),
        }
    for module in CONDITIONAL_MODULES:
        result["module_cost"][module] = result["contenders"][f"only_{module}"]["vs_vanilla"] - 1
    return result


def format_breakdown(result: dict) -> str:
    lines = [
        f"CA-MTL step time by conditional module, {result['shape']} shape, batch {result['batch_size']} "
        f"padded to {MAX_SEQ_LENGTH}, {result['rounds']} rounds",
        f"{'contender':<24} {'median s':>9} {'vs vanilla':>11}  quartiles",
    ]
    for name, row in result["contenders"].items():
        first, third = row["vs_vanilla_quartiles"]
        lines.append(f"{name:<24} {row['median_s']:9.3f} {row['vs_vanilla']:11.3f}  {first:.3f}-{third:.3f}")
    lines.append("module cost = median of t_only_module / t_vanilla, minus 1")
    lines += [f"{module:<24} {cost:+9.3f}" for module, cost in result["module_cost"].items()]
    return "\n".join(lines)
