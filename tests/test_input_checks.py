"""Checks that run while parsing or reading files: numeric flags, config-file values, GLUE files.

In-process and fast; tests/test_bad_inputs.py runs representative cases end to end.
"""

import errno
import json
import logging
import os
from pathlib import Path

import pytest

import camtl.data.features
from camtl.bench.__main__ import PROGRAMS
from camtl.bench.__main__ import main as bench_main
from camtl.data.features import load_features
from camtl.data.sources import task_data_dir
from camtl.data.splits import check_data_dir, read_split
from camtl.errors import UsageError
from camtl.training.command_line import parse_arguments

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
BASE = ["--model_name_or_path", "m", "--data_dir", "d", "--output_dir", "o", "--report_to", "none"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning_rate", "nan"], "--learning_rate must be a finite number >= 0, got nan"),
        (["--max_grad_norm", "inf"], "--max_grad_norm must be a finite number >= 0"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must be a finite number >= 0"),
        (["--weight_decay", "-0.1"], "--weight_decay must be a finite number >= 0"),
        (["--adam_beta1", "-0.1"], r"--adam_beta1 must be in \[0, 1\)"),
        (["--adam_beta1", "1.5"], r"--adam_beta1 must be in \[0, 1\)"),
        (["--adam_beta2", "nan"], r"--adam_beta2 must be in \[0, 1\)"),
        (["--adam_epsilon=-1e-8"], "--adam_epsilon must be a finite number > 0"),
        (["--label_smoothing_factor", "0.1"], "--label_smoothing_factor 0.1 is a Trainer option that camtl"),
        (["--warmup_steps", "nan"], "--warmup_steps must be a number of steps >= 0"),
        (["--warmup_proportion", "nan"], r"--warmup_proportion must be in \[0, 1\)"),
        (["--num_train_epochs", "nan"], "--num_train_epochs must be a finite number of epochs"),
        (["--eval_delay", "-1"], "--eval_delay must be a finite number >= 0"),
        (["--max_steps", "-5"], "--max_steps must be positive"),
        (["--logging_steps", "0"], "--logging_steps must be positive"),
        (["--eval_strategy", "steps", "--eval_steps", "2.5"], "--eval_steps must be a whole number of steps"),
        (["--save_steps", "nan"], "--save_steps must be positive"),
        (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be 0 or more"),
        (["--eval_accumulation_steps", "4"], "--eval_accumulation_steps 4 is a Trainer option that camtl"),
        (["--metric_for_best_model", "eval_rte"], "--metric_for_best_model eval_rte is a Trainer option"),
        (["--eval_do_concat_batches", "false"], "--eval_do_concat_batches false is a Trainer option"),
    ],
)
def test_every_numeric_training_flag_is_checked_naming_it(flags, message):
    with pytest.raises(UsageError, match=rf"^{message}"):
        parse_arguments([*BASE, "--do_train", *flags])


def test_fractions_of_the_run_stay_allowed_for_step_intervals():
    *_, args = parse_arguments([*BASE, "--do_train", "--save_steps", "0.25", "--logging_steps", "0.5"])
    assert (args.save_steps, args.logging_steps) == (0.25, 0.5)


def config(tmp_path, **values):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_name_or_path": "m", "data_dir": "d", "output_dir": "o"} | values))
    return path


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": "fast"}, """key 'learning_rate': expected a number, got "fast\""""),
        ({"learning_rate": True}, "key 'learning_rate': expected a number, got true"),
        ({"max_steps": 2.5}, "key 'max_steps': expected a whole number, got 2.5"),
        ({"do_train": "maybe"}, """key 'do_train': expected true or false, got "maybe\""""),
        ({"lr_scheduler_type": "fast"}, """key 'lr_scheduler_type': expected one of linear, cosine"""),
        ({"seed": [1, 2]}, "key 'seed': expected a single value, got \\[1, 2\\]"),
        ({"no_average_tokens_across_devices": 1}, "key 'no_average_tokens_across_devices': expected true or"),
        ({"lerning_rate": 0.1}, "unknown key 'lerning_rate'"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_reported_with_its_key(tmp_path, values, message):
    path = config(tmp_path, **values)
    with pytest.raises(UsageError, match=rf"^{path}: {message}"):
        parse_arguments([str(path)])


def test_a_config_key_given_twice_is_refused_and_a_bom_is_read(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_name_or_path": "m", "data_dir": "d", "output_dir": "o", "seed": 1, "seed": 2}')
    with pytest.raises(UsageError, match=rf"^{path}: key 'seed' is given twice: keep one$"):
        parse_arguments([str(path)])
    path.write_bytes(b"\xef\xbb\xbf" + b'{"model_name_or_path": "m", "data_dir": "d", "output_dir": "o"}')
    assert parse_arguments([str(path)])[2].output_dir == "o"


def test_config_values_of_the_right_type_parse_as_their_flags(tmp_path):
    path = config(
        tmp_path,
        do_train=True,
        do_eval=False,
        learning_rate="1e-3",
        max_steps=3,
        tasks=["rte", "sst-2"],
        report_to=["none"],
        lr_scheduler_kwargs={"power": 2.0},
        no_average_tokens_across_devices=True,
    )
    _, data_args, args = parse_arguments([str(path)])
    assert (args.do_train, args.do_eval, args.learning_rate, args.max_steps) == (True, False, 1e-3, 3)
    assert data_args.tasks == ["rte", "sst-2"]
    assert args.lr_scheduler_kwargs == {"power": 2.0}
    assert args.average_tokens_across_devices is False


def test_help_lists_every_flag(capsys):
    """argparse %-formats each flag's help: a bare percent sign in one made --help a traceback."""
    with pytest.raises(SystemExit) as stop:
        parse_arguments(["--help"])
    assert stop.value.code == 0 and "usage: python run.py" in capsys.readouterr().out


def test_training_flags_without_do_train_are_named_in_one_warning(caplog):
    """A training command reused to evaluate keeps working; the flags it cannot use are named, once."""
    training = ["--learning_rate", "1e-3", "--max_train_samples", "3"]
    with caplog.at_level(logging.WARNING, logger="camtl.training.command_line"):
        _, data_args, args = parse_arguments([*BASE, "--do_eval", *training])
        parse_arguments([*BASE, "--do_train", *training])  # read by training: no warning
    assert args.do_eval and data_args.max_train_samples == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "camtl.training.command_line"]
    assert warnings == [
        "--learning_rate, --max_train_samples: only training reads them, and this run has no --do_train:"
        " ignored"
    ]


def test_a_data_folder_named_twice_counts_once():
    """``glue glue/ ./glue``: one folder, not two that both hold RTE."""
    spellings = [str(FIXTURES), f"{FIXTURES}/", os.path.relpath(FIXTURES)]
    assert task_data_dir("rte", spellings) == FIXTURES


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_bad_bench_option_is_one_line_naming_the_programs_help(program, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_main([program, "--no_such_option"])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and error.count("\n") == 1 and error.startswith("error: "), error
    assert "(see python -m camtl.bench" in error and "--help)" in error


def write_bytes(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_training_rows_that_are_not_utf8_are_skipped_and_counted(tmp_path, caplog):
    write_bytes(
        tmp_path / "SST-2" / "train.tsv", b"sentence\tlabel\ngood\t1\ncaf\xe9\t0\nfine\t0\n\xff\xfe\t1\n"
    )
    with caplog.at_level(logging.WARNING):
        examples = read_split(tmp_path, "sst-2", "train")
    assert examples.text_a == ["good", "fine"]
    assert examples.skipped == 2
    assert "skipped 2 malformed training rows" in caplog.text
    report = check_data_dir(tmp_path, ["sst-2"])
    assert report["tasks"] == {"sst-2": {"train": 2}}
    assert report["warnings"] == [f"{tmp_path / 'SST-2' / 'train.tsv'}: 2 malformed training rows skipped"]


@pytest.mark.parametrize("split", ["train", "dev"])
def test_a_header_that_is_not_utf8_is_an_error_naming_line_1(tmp_path, split):
    path = write_bytes(tmp_path / "SST-2" / f"{split}.tsv", b"sent\xe9nce\tlabel\ngood\t1\n")
    with pytest.raises(UsageError, match=rf"{path}:1 is not valid UTF-8 \(byte 0xe9 at column 5\)"):
        read_split(tmp_path, "sst-2", split)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_a_header_with_fewer_columns_than_the_task_reads_names_file_and_count(tmp_path, split):
    """RTE reads columns 0-3 (the test split 0-2): a short header used to end in an IndexError."""
    path = write_bytes(tmp_path / "RTE" / f"{split}.tsv", b"index\tsentence1\n0\tA man.\n")
    expected = 3 if split == "test" else 4
    with pytest.raises(
        UsageError, match=rf"{path}:1 has a header of 2 columns, expected at least {expected}"
    ):
        read_split(tmp_path, "rte", split)
    report = check_data_dir(tmp_path, ["rte"])  # the check command reports it instead of crashing
    assert any(f"{path}:1 has a header of 2 columns" in problem for problem in report["problems"])


@pytest.mark.parametrize(("task", "content"), [("sst-2", b"sentence\tlabel\n"), ("cola", b"")])
def test_a_dev_split_without_rows_is_an_error(tmp_path, task, content):
    folder = {"sst-2": "SST-2", "cola": "CoLA"}[task]
    path = write_bytes(tmp_path / folder / "dev.tsv", content)
    with pytest.raises(UsageError, match=rf"{path} has (a header but )?no rows"):
        read_split(tmp_path, task, "dev")


def test_a_feature_cache_that_cannot_be_written_costs_the_cache_not_the_run(
    tmp_path, bundled_tokenizer, monkeypatch, caplog
):
    write_bytes(tmp_path / "glue" / "SST-2" / "dev.tsv", b"sentence\tlabel\ngood\t1\nbad\t0\n")

    def full_disk(state, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(camtl.data.features, "_atomic_save", full_disk)
    with caplog.at_level(logging.WARNING):
        features = load_features(tmp_path / "glue", "sst-2", "dev", bundled_tokenizer, 16, tmp_path / "cache")
    assert len(features) == 2
    assert "cannot write the feature cache" in caplog.text and "No space left" in caplog.text
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_every_flag_the_troubleshooting_page_names_exists():
    import re
    from pathlib import Path

    from camtl.training.arguments import CaMtlTrainingArguments, DataArguments, ModelArguments
    from camtl.training.command_line import ArgumentParser

    section = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text()
    parser = ArgumentParser((ModelArguments, DataArguments, CaMtlTrainingArguments))
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", section))
    misspelled_on_purpose = {"--use_mt_uncertanity"}
    assert named - set(parser._option_string_actions) - misspelled_on_purpose == set()
