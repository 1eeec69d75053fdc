"""camtl.training.checkpoints and camtl.training.run_settings without training: which checkpoint
``latest`` takes, what an explicit one must hold, what --overwrite_output_dir removes, and which changed
settings a resume refuses; and the one line for a damaged model directory or checkpoint."""

import dataclasses
import json
import logging
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from camtl.errors import UsageError
from camtl.model import load_model, read_saved_config
from camtl.tasks import TASKS
from camtl.training.arguments import DataArguments, ModelArguments
from camtl.training.checkpoints import (
    MARKER,
    check_explicit,
    choose_latest,
    complete_checkpoint,
    prepare_staging,
    required_files,
    write_run_file,
)
from camtl.training.command_line import parse_arguments
from camtl.training.overwrite import ASIDE, replacing_earlier_run
from camtl.training.run_settings import DEFINING, HARMLESS, RECORDED, SETTINGS, compare_settings, run_settings


def make_checkpoint(run_dir, step: int, run_id: str = "run-a"):
    """A small checkpoint with every piece a resume needs, written the way the trainer writes one."""
    staged = prepare_staging(run_dir, step)
    save_file({"w": torch.zeros(3)}, staged / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "sampling_state.pt"):
        torch.save({"state": torch.ones(4)}, staged / name)
    for name in ("config.json", "trainer_state.json", "run_settings.json"):
        (staged / name).write_text("{}")
    return complete_checkpoint(staged, run_dir, run_id, step, world_size=1)


def test_a_checkpoint_appears_complete_or_not_at_all(tmp_path):
    final = make_checkpoint(tmp_path, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]  # the temporary folder is gone
    marker = json.loads((final / MARKER).read_text())
    assert marker["step"] == 4 and marker["run_id"] == "run-a"
    assert set(marker["files"]) >= set(required_files(1)) - {MARKER}
    assert check_explicit(final, 1) == final


def test_latest_takes_the_newest_complete_checkpoint_and_names_the_skipped(tmp_path, caplog):
    write_run_file(tmp_path, "run-a")
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-4" / MARKER).unlink()  # as a kill during an older camtl's save left it
    make_checkpoint(tmp_path, 6)
    (tmp_path / "checkpoint-6" / "optimizer.pt").write_bytes(b"half")  # truncated by a full disk
    prepare_staging(tmp_path, 8)  # a save that a kill interrupted
    with caplog.at_level(logging.INFO):
        assert choose_latest(tmp_path, 1) == tmp_path / "checkpoint-2"
    assert f"skipping {tmp_path / 'checkpoint-6'}: optimizer.pt has 4 bytes" in caplog.text
    assert f"skipping {tmp_path / 'checkpoint-4'}: it has no {MARKER}" in caplog.text
    assert f"resuming from {tmp_path / 'checkpoint-2'}" in caplog.text


def test_latest_never_takes_a_checkpoint_of_another_run(tmp_path):
    make_checkpoint(tmp_path, 2, run_id="earlier")
    write_run_file(tmp_path, "this-run")
    with pytest.raises(
        UsageError, match="no complete checkpoint of this run .checkpoint-2: it belongs to an"
    ):
        choose_latest(tmp_path, 1)


def test_overwrite_output_dir_sets_the_earlier_run_aside_so_resume_cannot_find_it(tmp_path, caplog):
    make_checkpoint(tmp_path, 2, run_id="earlier")
    make_checkpoint(tmp_path, 4, run_id="earlier")
    write_run_file(tmp_path, "earlier")
    (tmp_path / "eval_history.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with replacing_earlier_run(tmp_path, resume=None, is_main=True, world_size=1) as replacement:
        assert replacement.run_id != "earlier"
        assert "earlier run's checkpoint-2, checkpoint-4, eval_history.json" in caplog.text
        assert sorted(p.name for p in tmp_path.iterdir()) == [ASIDE, "notes.txt", "run.json"]
        with pytest.raises(UsageError, match="no checkpoint-N folder"):
            choose_latest(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run.json"]


def test_a_resumed_run_keeps_its_id(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 2, run_id="run-a")
    with replacing_earlier_run(tmp_path, resume=checkpoint, is_main=True, world_size=1) as replacement:
        assert replacement.run_id == "run-a"
    assert json.loads((tmp_path / "run.json").read_text()) == {"run_id": "run-a"}
    assert (tmp_path / "checkpoint-2").is_dir()


@pytest.mark.parametrize("piece", ["optimizer.pt", "scheduler.pt", "rng_state.pth", "sampling_state.pt"])
def test_a_checkpoint_without_a_piece_is_refused_naming_it_and_the_last_good_one(tmp_path, piece):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-4" / piece).unlink()
    with pytest.raises(
        UsageError, match=rf"{piece} is missing: resume from {tmp_path / 'checkpoint-2'} instead"
    ):
        check_explicit(tmp_path / "checkpoint-4", 1)


def test_two_processes_need_every_rank_s_state(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 2)
    with pytest.raises(UsageError, match="rng_state_0.pth is missing"):
        check_explicit(checkpoint, world_size=2)


def settings_of(*flags: str, model_args_class=ModelArguments) -> tuple[dict, dict]:
    base = ["--model_name_or_path", "m", "--data_dir", "d", "--output_dir", "o", "--report_to", "none"]
    model_args, data_args, args = parse_arguments([*base, "--do_train", *flags])
    model_args = model_args_class(**dataclasses.asdict(model_args))
    data_args.max_seq_length = data_args.max_seq_length or 128
    tasks = ["rte", "sst-2"]
    defaults = {f.name: f.default for a in (model_args, data_args) for f in dataclasses.fields(a)}
    return run_settings(model_args, data_args, args, tasks, data_args.resolve_sampler()), defaults


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seed", "3"], "--seed 42 (now 3)"),
        (["--max_seq_length", "64"], "--max_seq_length 128 (now 64)"),
        (["--max_train_samples", "10"], "--max_train_samples None (now 10)"),
        (["--layout", "large"], "--layout None (now large)"),
        (["--task_sampling", "uniform"], "--task_sampling proportional (now uniform)"),
        (["--per_device_train_batch_size", "8"], "--per_device_train_batch_size 32 (now 8)"),
    ],
)
def test_a_resume_that_changes_a_defining_setting_is_refused_naming_it(flags, named):
    recorded, defaults = settings_of()
    current, _ = settings_of(*flags)
    with pytest.raises(UsageError, match=rf"was trained with .*{named.replace('(', '.').replace(')', '.')}"):
        compare_settings("ckpt", recorded, current, defaults)


def test_a_resume_at_another_precision_is_refused_on_any_cpu():
    recorded, defaults = settings_of("--precision", "fp32")
    # what --precision auto resolves to on a CPU where bf16 pays (on this one it may resolve to fp32)
    current = {**recorded, "precision": "bf16", "bf16": True}
    with pytest.raises(UsageError, match=r"was trained with .*--bf16 False .now True."):
        compare_settings("ckpt", recorded, current, defaults)


def test_harmless_changes_are_returned_for_a_notice():
    recorded, defaults = settings_of("--save_steps", "4", "--use_mt_uncertainty")
    current, _ = settings_of("--save_steps", "2", "--logging_steps", "1", "--task_sampling", "mt-uncertainty")
    changes = compare_settings("ckpt", recorded, current, defaults)
    assert changes == ["--logging_steps 500 (now 1)", "--save_steps 4 (now 2)"]


def test_model_options_added_later_are_defining_without_touching_the_table():
    @dataclasses.dataclass
    class WithNewOption(ModelArguments):
        new_option: str = "old"

    recorded, defaults = settings_of()  # a checkpoint from before the option existed
    current, _ = settings_of(model_args_class=WithNewOption)
    current["new_option"] = "old"
    assert compare_settings("ckpt", recorded, current, defaults | {"new_option": "old"}) == []
    current["new_option"] = "new"
    with pytest.raises(UsageError, match="--new_option old .now new."):
        compare_settings("ckpt", recorded, current, defaults | {"new_option": "old"})


def test_the_table_classifies_every_field_it_names_and_model_data_fields_default_to_defining():
    assert set(SETTINGS.values()) == {DEFINING, HARMLESS, RECORDED}
    names = {f.name for cls in (ModelArguments, DataArguments) for f in dataclasses.fields(cls)}
    assert {name for name in names if SETTINGS.get(name) == HARMLESS} == {
        "data_dir",
        "overwrite_cache",
        "features_cache_dir",
        "max_eval_samples",
        "max_predict_samples",
    }


def test_the_machine_is_recorded_not_compared_and_the_precision_is_defining():
    recorded, defaults = settings_of()
    assert recorded["precision_choice"]["hardware"] and recorded["precision"] in ("fp32", "bf16")
    moved = {**recorded, "precision_choice": {**recorded["precision_choice"], "hardware": "another CPU"}}
    assert compare_settings("ckpt", recorded, moved, defaults) == []
    other = "bf16" if recorded["precision"] == "fp32" else "fp32"
    with pytest.raises(UsageError, match=f"--precision {recorded['precision']} .now {other}."):
        compare_settings("ckpt", recorded, {**recorded, "precision": other}, defaults)


def test_a_resume_from_another_folder_sets_the_earlier_run_aside_and_restores_it_on_failure(tmp_path):
    out, other = tmp_path / "out", tmp_path / "other"
    make_checkpoint(out, 9, run_id="earlier")
    write_run_file(out, "earlier")
    (out / "eval_results.json").write_text("{}")
    resume = make_checkpoint(other, 2, run_id="other-run")
    with (
        pytest.raises(RuntimeError, match="fails"),
        replacing_earlier_run(out, resume=resume, is_main=True, world_size=1) as replacement,
    ):
        assert replacement.run_id == "other-run"
        assert sorted(p.name for p in out.iterdir()) == [ASIDE, "run.json"]  # nothing mixed in
        raise RuntimeError("the resumed run fails before its first checkpoint")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-9", "eval_results.json", "run.json"]
    assert json.loads((out / "run.json").read_text()) == {"run_id": "earlier"}


# Damaged model directories and checkpoints: one UsageError before any weight is loaded into a model.
# (source, damage(directory), the words of the answer)


def edit_config(**fields):
    def damage(path):
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps(config | fields))

    return damage


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def bin_weights_cut_short(path):
    torch.save(load_file(path / "model.safetensors"), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    cut_in_half(path / "pytorch_model.bin")


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def in_two_shards(path):
    """The weights saved as transformers shards them: two files and model.safetensors.index.json."""
    tensors = load_file(path / "model.safetensors")
    names = sorted(tensors)
    parts = dict(zip(SHARDS, (names[: len(names) // 2], names[len(names) // 2 :]), strict=True))
    for shard, keys in parts.items():
        save_file({k: tensors[k] for k in keys}, path / shard, metadata={"format": "pt"})
    weight_map = {key: shard for shard, keys in parts.items() for key in keys}
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "model.safetensors").unlink()


def a_shard_cut_short(path):
    in_two_shards(path)
    cut_in_half(path / SHARDS[1])


def an_index_cut_short(path):
    in_two_shards(path)
    cut_in_half(path / "model.safetensors.index.json")


DAMAGED_MODELS = {
    "backbone weights of 0 bytes": (
        "backbone", lambda p: (p / "model.safetensors").write_bytes(b""), "small): the weights are damaged"
    ),
    "backbone weights cut short": (
        "backbone", lambda p: cut_in_half(p / "model.safetensors"), "model.safetensors' cannot be read"
    ),
    "backbone pytorch_model.bin cut short": ("backbone", bin_weights_cut_short, "the weights are damaged"),
    "a backbone shard cut short": ("backbone", a_shard_cut_short, f"{SHARDS[1]}' cannot be read"),
    "a backbone shard index cut short": (
        "backbone", an_index_cut_short, "model.safetensors.index.json' is not a weights index"
    ),
    "a task definition without its fields": (
        "checkpoint",
        edit_config(task_specs={"mine": {"name": "mine"}}, tasks=["mine"]),
        "task_specs 'mine' is not a task definition (no folder, train, dev, test, labels",
    ),
    "a task definition under another name": (
        "checkpoint",
        edit_config(task_specs={"rte": TASKS["sst-2"].to_dict()}, tasks=["rte"]),
        "task_specs 'rte' defines a task named 'sst-2'",
    ),
    "a trained task without a definition": (
        "checkpoint", edit_config(tasks=["foo"]), "task 'foo' of 'tasks' has no definition in 'task_specs'"
    ),
    "tasks that the weights were not trained on": (
        "checkpoint", edit_config(tasks=["rte", "sst-2"]), "model.safetensors' does not match its config.json"
    ),
}  # fmt: skip


@pytest.mark.parametrize("layout", ["whole", "sharded"])
def test_backbone_weights_are_read_from_the_files_transformers_reads(layout, tiny_bert, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_bert, path)
    if layout == "sharded":
        in_two_shards(path)
    (path / "model-old.safetensors").write_bytes(b"")  # a stray file that transformers never opens
    model = load_model(str(path), ["rte"], layout="base", max_seq_length=32)
    (saved,) = [v for k, v in load_file(tiny_bert / "model.safetensors").items() if "word_embeddings" in k]
    (loaded,) = [v for k, v in model.state_dict().items() if "word_embeddings" in k]
    assert torch.equal(loaded, saved)  # the pretrained weights, not a fresh initialisation


@pytest.fixture(scope="module")
def rte_checkpoint(tiny_bert, tmp_path_factory):
    """A camtl checkpoint of the tiny model trained (saved) on rte alone."""
    path = tmp_path_factory.mktemp("rte-checkpoint")
    load_model(str(tiny_bert), ["rte"], layout="base", max_seq_length=32).save_pretrained(path)
    return path


@pytest.mark.parametrize("name", list(DAMAGED_MODELS))
def test_a_damaged_model_directory_is_one_usage_error_naming_it(name, tiny_bert, rte_checkpoint, tmp_path):
    source, damage, expected = DAMAGED_MODELS[name]
    path = tmp_path / "model"
    shutil.copytree(tiny_bert if source == "backbone" else rte_checkpoint, path)
    damage(path)
    tasks = ["rte"] if source == "backbone" else None
    with pytest.raises(UsageError, match=re.escape(expected)):
        read_saved_config(str(path))  # run.py reads the config first: the task definitions are checked here
        load_model(str(path), tasks, layout="base" if tasks else None, max_seq_length=32)
