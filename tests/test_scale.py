"""Mixed precision, distributed training, exact resume and divergence detection (issue: scale)."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from camtl.training.precision import cpu_name, this_cpu

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"


def train_flags(tiny_bert: Path, tmp_path: Path, output: str, steps: int = 8) -> list[str]:
    return [
        "--model_name_or_path", str(tiny_bert), "--layout", "base", "--data_dir", str(FIXTURES),
        "--output_dir", str(tmp_path / output), "--features_cache_dir", str(tmp_path / "cache"),
        "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
        "--do_train", "--do_eval", "--max_steps", str(steps), "--save_steps", "4", "--logging_steps", "2",
        "--report_to", "none", "--seed", "11", "--use_mt_uncertainty", "--max_eval_samples", "6",
    ]  # fmt: skip


def run(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + args
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_resumed_run_ends_exactly_like_the_uninterrupted_one(tiny_bert, tmp_path):
    whole = run(["run.py", *train_flags(tiny_bert, tmp_path, "whole")])
    assert whole.returncode == 0, whole.stderr[-3000:]
    # An interrupted run leaves checkpoint-4 behind; resuming from it must replay the rest exactly.
    (tmp_path / "interrupted").mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-4", tmp_path / "interrupted" / "checkpoint-4")
    resumed = run(
        ["run.py", *train_flags(tiny_bert, tmp_path, "interrupted"), "--resume_from_checkpoint", "latest"]
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_file(tmp_path / "whole" / "model.safetensors")
    actual = load_file(tmp_path / "interrupted" / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    results = [json.loads((tmp_path / d / "eval_results.json").read_text()) for d in ("whole", "interrupted")]
    assert results[0] == results[1]
    usage = [
        json.loads((tmp_path / d / "sampling_summary.json").read_text()) for d in ("whole", "interrupted")
    ]
    for key in usage[0]:
        if key != "sampling/selection_seconds":
            assert usage[0][key] == usage[1][key], key


def test_checkpoints_hold_everything_resume_needs(tiny_bert, tmp_path):
    result = run(["run.py", *train_flags(tiny_bert, tmp_path, "out", steps=4)])
    assert result.returncode == 0, result.stderr[-3000:]
    names = {p.name for p in (tmp_path / "out" / "checkpoint-4").iterdir()}
    expected = {"config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert expected | {"trainer_state.json", "sampling_state.pt", "tokenizer.json"} <= names


def test_two_process_torchrun_keeps_ranks_identical_and_writes_once(tiny_bert, tmp_path):
    script = tmp_path / "train_and_hash.py"
    script.write_text(
        "import hashlib, sys, torch\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import run\n"
        "trainer = run.main(sys.argv[1:])\n"
        "digest = hashlib.sha256()\n"
        "for name, tensor in sorted(trainer.model.state_dict().items()):\n"
        "    digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())\n"
        "rank = trainer.args.process_index\n"
        f"open({str(tmp_path)!r} + f'/rank{{rank}}.sha', 'w').write(digest.hexdigest())\n"
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([str(script), *train_flags(tiny_bert, tmp_path, "ddp", steps=4)], launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = [(tmp_path / f"rank{r}.sha").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    assert result.stdout.count("GLUE average without WNLI") == 1  # the results table, printed once
    out = tmp_path / "ddp"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    usage = json.loads((out / "sampling_summary.json").read_text())
    drawn = sum(v for k, v in usage.items() if k.endswith("/examples_drawn"))
    assert drawn == 4 * 4 * 2  # steps x batch x ranks: the counters are summed over ranks
    saved = load_file(out / "model.safetensors")
    digest = hashlib.sha256()
    for name, tensor in sorted(saved.items()):
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == hashes[0]


@pytest.mark.skipif(not this_cpu().native_bf16, reason="this CPU has no native bf16: --bf16 is refused here")
def test_bf16_trains_end_to_end_on_the_cpu(tiny_bert, tmp_path):
    result = run(["run.py", *train_flags(tiny_bert, tmp_path, "bf16", steps=4), "--bf16"])
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "bf16" / "eval_results.json").read_text())
    assert 0 <= results["glue_average"] <= 1
    settings = json.loads((tmp_path / "bf16" / "checkpoint-4" / "run_settings.json").read_text())
    assert settings["precision"] == "bf16" and settings["bf16"] is True
    assert (
        settings["precision_choice"]["hardware"] == cpu_name() and settings["precision_choice"]["native_bf16"]
    )


def test_non_finite_loss_stops_the_run_naming_step_and_tasks(tiny_bert):
    from transformers import AutoTokenizer

    from camtl.data.collation import MultiTaskCollator
    from camtl.errors import TrainingDiverged
    from camtl.model import load_model
    from camtl.training.arguments import CaMtlTrainingArguments
    from camtl.training.counters import TaskUsage
    from camtl.training.trainer import CaMtlTrainer

    model = load_model(str(tiny_bert), ["sts-b", "rte"], layout="base", max_seq_length=32)
    args = CaMtlTrainingArguments(output_dir=str(tiny_bert / "unused"), report_to="none")
    collator = MultiTaskCollator(AutoTokenizer.from_pretrained(tiny_bert).pad_token_id)
    trainer = CaMtlTrainer(model=model, args=args, collator=collator)
    batch = {
        "input_ids": torch.tensor([[101, 2000, 102], [101, 2001, 102]]),
        "token_type_ids": torch.zeros(2, 3, dtype=torch.long),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "task_ids": torch.tensor([0, 1]),
        "labels": torch.tensor([float("nan"), 1.0]),
        "example_index": torch.tensor([0, 0]),
    }
    trainer.usage = TaskUsage(["sts-b", "rte"], [1, 1])
    trainer.compute_loss(model, batch)  # noted on the device, no host sync in the step
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 1 on a batch of rte, sts-b"):
        trainer.log({"loss": 1.0})  # read at the next logging step
