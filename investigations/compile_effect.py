"""Does ``torch.compile`` (the CPU inductor backend) make the main job's training step faster, with the
same loss curve? ``python -m investigations.compile_effect``.

Issue 25 asked to try what the bf16 profile points to (``results/speed-profile-base-bf16.txt``: dtype
casts and element-wise ops are a third of a CA-MTL step, which a compiler can fuse). Two copies of the
main job's model (CA-MTL base layout on the bundled encoder, 6 x 384), one eager and one compiled with
``dynamic=True`` (length-grouped batches change length every step), train on the same length-grouped
mixed-task batches, alternating step by step after a warm-up that holds the compilation. Printed: the
compile time, the paired eager / compiled time ratio (above 1: compiled is faster), and both loss curves
(dropout draws differ between the two, so they are compared by their means over the timed steps), and
how many graphs were compiled (a new batch length can recompile).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from camtl.bench.speed_report import alternate, paired_ratio, paired_ratio_quartiles
from camtl.bench.speed_setup import (
    PADDINGS,
    THREADS,
    build_model,
    drawn_batches,
    make_optimizer,
    model_inputs,
    training_step,
)
from camtl.data.collation import MultiTaskCollator
from camtl.data.features import load_features
from camtl.model import load_tokenizer
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TRAINABLE_TASKS
from camtl.training.precision import this_cpu

DATA_DIR = Path("../shared/glue")
EXAMPLES_PER_TASK = 4000  # enough rows for the drawn batches; the cap keeps tokenizing short
WARMUP_STEPS = 12  # the compiled model's first steps compile (once static, once with dynamic lengths)
TIMED_ROUNDS = 40


def main() -> None:
    torch.set_num_threads(THREADS)
    cpu = this_cpu()
    precision = "bf16" if cpu.native_bf16 else "fp32"
    tokenizer = load_tokenizer(bundled_encoder_path())
    with tempfile.TemporaryDirectory() as cache:
        train_sets = {t: load_features(DATA_DIR, t, "train", tokenizer, 128, Path(cache), EXAMPLES_PER_TASK)
                      for t in TRAINABLE_TASKS}  # fmt: skip
    collate = MultiTaskCollator(tokenizer.pad_token_id, PADDINGS["grouped"][0])
    drawn = drawn_batches(train_sets, "proportional", WARMUP_STEPS + TIMED_ROUNDS, True)
    batches = [model_inputs(collate(examples)) for examples in drawn]
    eager, compiled_model = build_model("small", "base"), build_model("small", "base")  # equal weights
    optimizers = {"eager": make_optimizer(eager), "compiled": make_optimizer(compiled_model)}
    models = {"eager": eager, "compiled": torch.compile(compiled_model, dynamic=True)}
    losses: dict[str, list[float]] = {"eager": [], "compiled": []}
    calls: dict[str, list[float]] = {"eager": [], "compiled": []}  # warm-up steps included

    def step(name: str):
        def run(index: int) -> None:
            start = time.perf_counter()
            loss = training_step(models[name], optimizers[name], batches[index], precision)
            losses[name].append(float(loss))
            calls[name].append(time.perf_counter() - start)

        return run

    seconds = alternate({name: step(name) for name in models}, TIMED_ROUNDS, WARMUP_STEPS)
    print(f"CPU {cpu.name}, {THREADS} threads, {precision}, torch {torch.__version__}")
    print(f"CA-MTL base layout, 6 x 384, batch 32, length-grouped mixed-task batches (mean padded length "
          f"{statistics.mean(b['input_ids'].shape[1] for b in batches[WARMUP_STEPS:]):.1f})")  # fmt: skip
    warmup = {name: sum(times[:WARMUP_STEPS]) for name, times in calls.items()}
    print(f"first compiled step {calls['compiled'][0]:.1f} s; the {WARMUP_STEPS} warm-up steps "
          f"{warmup['compiled']:.1f} s compiled, {warmup['eager']:.1f} s eager")  # fmt: skip
    for name, times in seconds.items():
        print(f"{name:<9} median step {statistics.median(times):.3f} s, total {sum(times):.1f} s "
              f"over {TIMED_ROUNDS} steps")  # fmt: skip
    low, high = paired_ratio_quartiles(seconds["eager"], seconds["compiled"])
    print(f"eager / compiled, paired median: {paired_ratio(seconds['eager'], seconds['compiled']):.3f} "
          f"(quartiles {low:.3f}-{high:.3f}); above 1: compiled is faster")  # fmt: skip
    totals = {name: sum(times) for name, times in seconds.items()}
    print(f"eager / compiled, summed over the timed steps (recompilations included): "
          f"{totals['eager'] / totals['compiled']:.3f}")  # fmt: skip
    stats, breaks = counters["stats"], sum(counters["graph_break"].values())
    print(f"compiled graphs {stats['unique_graphs']}, frames compiled {stats['calls_captured']}, "
          f"graph breaks {breaks}")  # fmt: skip
    for name, curve in losses.items():
        timed = curve[WARMUP_STEPS:]
        print(f"{name:<9} loss: first {curve[0]:.4f}, mean over the timed steps {statistics.mean(timed):.4f}")


if __name__ == "__main__":
    main()
