"""The model FLOP/s of the committed speed run's precision axis, recounted over its timed batches:
``python -m investigations.flop_share_recount``.

The run in ``results/speed.json`` (2026-12-04) divided 6 x parameters x the *mean* padded length of the
grouped batches by the *median* step time. Grouped batches run from a few tokens to 128, so a median time
belongs to a shorter batch than the mean length, and the rate came out above the GEMM rate.
``camtl/bench/speed_precision.py`` now divides the FLOPs of all timed rounds by their summed time. This
program applies that count to the committed times: the speed program draws its batches with a fixed seed,
so it draws the same ones again (and checks their mean padded length against the recorded one), then
prints each step's rate and its fraction of the GEMM rate measured in that run.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from camtl.bench.speed import FULL
from camtl.bench.speed_precision import PADDING, model_parameters
from camtl.bench.speed_report import WARMUP_ROUNDS
from camtl.bench.speed_setup import BATCH_SIZE, MAX_SEQ_LENGTH, PADDINGS, THREADS, drawn_batches
from camtl.bench.speed_training import BUILD_ORDERS
from camtl.data.collation import MultiTaskCollator
from camtl.data.features import load_features
from camtl.model import load_tokenizer
from camtl.model.presets import bundled_encoder_path
from camtl.tasks import TRAINABLE_TASKS

RESULTS = Path("results/speed.json")
DATA_DIR = Path("../shared/glue")


def drawn_lengths(train_sets: dict, pad_token_id: int, rounds: int, warmup: int) -> tuple[list, list]:
    """Padded lengths of the batches each build-order process drew (warm-up included) and of those it
    timed, as measure_training_steps draws them."""
    per_process = math.ceil(rounds / len(BUILD_ORDERS))
    collate = MultiTaskCollator(pad_token_id, PADDINGS[PADDING][0])
    drawn, timed = [], []
    for index in range(len(BUILD_ORDERS)):
        first = index * per_process
        batches = drawn_batches(train_sets, "proportional", first + warmup + per_process, True)[first:]
        lengths = [collate(batch)["input_ids"].shape[1] for batch in batches]
        drawn, timed = drawn + lengths, timed + lengths[warmup:]
    return drawn, timed


def main() -> None:
    axis = json.loads(RESULTS.read_text())["precision"]
    gemm = next(row for row in axis["gemm"] if row["threads"] == THREADS)
    tokenizer = load_tokenizer(bundled_encoder_path())
    with tempfile.TemporaryDirectory() as cache:
        train_sets = {t: load_features(DATA_DIR, t, "train", tokenizer, MAX_SEQ_LENGTH, Path(cache))
                      for t in TRAINABLE_TASKS}  # fmt: skip
    print(f"{RESULTS} precision axis, recounted: FLOPs of the timed rounds / their summed time")
    print(f"{'shape':<7}{'step':<24}{'mean padded len':>16}{'model GFLOP/s':>15}{'of GEMM':>9}")
    for shape, rounds in (("small", FULL.small_rounds), ("base", FULL.base_rounds)):
        training = axis[f"training_{shape}"]
        drawn, lengths = drawn_lengths(train_sets, tokenizer.pad_token_id, rounds, WARMUP_ROUNDS)
        recorded = training["mean_padded_length"][PADDING]  # over warm-up and timed batches
        parameters = model_parameters(shape)
        for step, summary in training["steps"].items():
            name, precision = step.split("_")[0], "bf16" if step.endswith("_bf16") else "fp32"
            rate = 6 * parameters[name] * BATCH_SIZE * sum(lengths) / sum(summary["seconds"])
            print(f"{shape:<7}{step:<24}{sum(lengths) / len(lengths):>16.1f}{rate / 1e9:>15.1f}"
                  f"{rate / gemm[precision]:>9.0%}")  # fmt: skip
        print(f"{shape}: mean padded length with the warm-up {sum(drawn) / len(drawn):.2f} drawn again,"
              f" {recorded:.2f} recorded; {len(lengths)} timed rounds")  # fmt: skip


if __name__ == "__main__":
    main()
