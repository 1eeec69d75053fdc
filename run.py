"""Train, evaluate and predict CA-MTL on GLUE: ``python run.py [flags]`` or ``python run.py config.json``.

This file only wires the command line to camtl's data, model, training and evaluation modules.
Every check of the user's input runs before the model or the data are loaded.
"""

from __future__ import annotations

import camtl  # noqa: F401  (first: it sets the OpenMP wait policy before torch loads)

# isort: split
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import logging as hf_logging
from transformers import set_seed

from camtl.data.collation import Masking, MultiTaskCollator
from camtl.data.features import default_cache_dir, load_features
from camtl.data.sources import task_data_dir
from camtl.data.splits import DOWNLOAD_HINT, is_declared, read_split, require_split, split_exists, split_path
from camtl.errors import UsageError, exits_cleanly_on_usage_error
from camtl.model import (
    encoder_layer_count,
    format_parameter_report,
    freeze_encoder_layers,
    load_model,
    load_tokenizer,
    parameter_report,
    parse_layer_range,
    read_saved_config,
)
from camtl.tasks import TASKS
from camtl.tasks.plan import TaskPlan, plan_tasks
from camtl.training.allocator import retain_freed_memory
from camtl.training.arguments import CaMtlTrainingArguments, DataArguments
from camtl.training.checkpoints import check_explicit, choose_latest, resumes_latest
from camtl.training.command_line import parse_arguments
from camtl.training.evaluation import predict_tasks
from camtl.training.filesystem import check_writable, redirect_outputs, results_dir, writing_results
from camtl.training.metrics import format_results_table, selection_score
from camtl.training.overwrite import replacing_earlier_run, resumes_from_within
from camtl.training.precision import mixed_precision
from camtl.training.run_settings import check_resume_settings, run_settings
from camtl.training.sampling import build_sampler
from camtl.training.signals import GracefulStop
from camtl.training.submission import cut_short, write_predictions, write_submission
from camtl.training.trainer import CaMtlTrainer

logger = logging.getLogger("camtl")

DEFAULT_MAX_SEQ_LENGTH = 128


def resolve_resume(model_args, data_args, args: CaMtlTrainingArguments, settings: dict) -> Path | None:
    """The checkpoint to resume from (the newest complete one of this run for ``latest``), checked to be
    complete and to have been trained with this run's settings."""
    resume = args.resume_from_checkpoint
    if resume is None:
        return None
    if resumes_latest(resume):
        checkpoint = choose_latest(Path(args.output_dir), args.world_size)
    else:
        checkpoint = check_explicit(Path(resume), args.world_size)
    check_resume_settings(checkpoint, model_args, data_args, args, settings)
    return checkpoint


def check_data_files(data_args: DataArguments, args: CaMtlTrainingArguments, plan: TaskPlan) -> None:
    """The splits the flags need exist and can be used: every dev and test row the run reads is well formed
    (a bad one stops the run) and every training file has a usable row (bad training rows are skipped).
    Reading is cheap next to tokenizing, so a bad row stops the run before the model is loaded."""
    if args.do_train:
        for task in plan.trained:
            data_dir = task_data_dir(task, data_args.data_dir)
            path = require_split(data_dir, task, "train", needed_by="--do_train")
            # every row malformed is read_split's error, naming the first; what is left is a file of no rows
            if not len(read_split(data_dir, task, "train", max_examples=1)):
                fix = "add rows, or fix files.train in --task_file" if is_declared(task) else "re-download it"
                raise UsageError(f"{path} has no usable training row (it has no rows): {fix}")
    if args.do_eval or args.eval_strategy != "no":
        if not plan.evaluated:
            strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
            flag = "--do_eval" if strategy == "no" else f"--eval_strategy {strategy}"
            raise UsageError(
                f"{flag}: no task of this run has a dev split ({', '.join(plan.trained)}): add one"
                " (files.dev in the task file), or drop the flag"
            )
        for task in plan.evaluated:
            data_dir = task_data_dir(task, data_args.data_dir)
            require_split(data_dir, task, "dev", needed_by="--do_eval")
            read_split(data_dir, task, "dev", data_args.max_eval_samples)
    if args.do_predict:
        found = [t for t in plan.predicted if split_exists(task_data_dir(t, data_args.data_dir), t, "test")]
        for task in found:  # a missing test file is a warning, later
            read_split(task_data_dir(task, data_args.data_dir), task, "test", data_args.max_predict_samples)
        if not found and not (args.do_train or args.do_eval):  # the run would write nothing at all
            raise UsageError(
                f"--do_predict: no test file for {', '.join(plan.predicted or plan.trained)}:"
                " add the test split (or a task that has one), or use --do_eval"
            )


def check_inputs(model_args, data_args, args, plan: TaskPlan, settings: dict) -> Path | None:
    """Everything that can be checked without loading the model or tokenizing the data."""
    if not (args.do_train or args.do_eval or args.do_predict):
        raise UsageError("nothing to do: add --do_train, --do_eval and/or --do_predict")
    if data_args.max_seq_length <= 2:
        raise UsageError(f"--max_seq_length must be above 2, got {data_args.max_seq_length}")
    for name in ("max_train_samples", "max_eval_samples", "max_predict_samples", "pad_to_multiple_of"):
        value = getattr(data_args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")
    if args.train_sampling_strategy not in ("random", "group_by_length"):
        raise UsageError(
            f"--train_sampling_strategy {args.train_sampling_strategy} is not used by camtl:"
            " choose tasks with --task_sampling; group_by_length is supported"
        )
    if model_args.freeze_encoder_layers:
        parse_layer_range(
            model_args.freeze_encoder_layers, encoder_layer_count(model_args.model_name_or_path)
        )
    for data_dir in map(Path, data_args.data_dir or ()):
        if not data_dir.is_dir():
            problem = "is a file, not a directory" if data_dir.exists() else "does not exist"
            raise UsageError(f"--data_dir {data_dir} {problem}: get GLUE with `{DOWNLOAD_HINT}`")
        if not any(data_dir.iterdir()):
            raise UsageError(f"--data_dir {data_dir} is empty: get GLUE with `{DOWNLOAD_HINT}`")
    model_args.check_model_options(list(plan.trained), data_args.max_seq_length)  # before any weight is read
    if args.do_train:
        data_args.sampling_weight_of(list(plan.trained))  # --sampling_weights names trained tasks
    check_writable("--output_dir", Path(args.output_dir))
    check_writable("--features_cache_dir", Path(data_args.features_cache_dir or default_cache_dir()))
    if "tensorboard" in args.report_to:
        check_writable("--logging_dir", Path(args.logging_dir))
    if args.do_train:
        check_model_outside_output(model_args.model_name_or_path, Path(args.output_dir))
        check_output_dir_free(args)
    resume = resolve_resume(model_args, data_args, args, settings) if args.do_train else None
    check_data_files(data_args, args, plan)
    return resume


def check_output_dir_free(args: CaMtlTrainingArguments) -> None:
    """Training into a folder that holds something needs --overwrite_output_dir, unless it continues the
    run there (a resume from a checkpoint inside it)."""
    output_dir, resume = Path(args.output_dir), args.resume_from_checkpoint
    continues = resume is not None and (
        resumes_latest(resume) or resumes_from_within(output_dir, Path(resume))
    )
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (args.overwrite_output_dir or continues):
        raise UsageError(
            f"--output_dir {output_dir} is not empty: add --overwrite_output_dir, "
            "--resume_from_checkpoint latest, or choose another directory"
        )


def check_model_outside_output(model_name_or_path: str, output_dir: Path) -> None:
    """Training replaces --output_dir: the model it starts from must not lie in it."""
    model_dir = Path(model_name_or_path).expanduser().resolve()
    if model_dir.is_dir() and model_dir.is_relative_to(output_dir.resolve()):
        raise UsageError(
            f"--model_name_or_path {model_name_or_path} lies in --output_dir {output_dir}, which training"
            " replaces: choose another --output_dir (or copy the model elsewhere first)"
        )


def collators(tokenizer, data_args: DataArguments) -> tuple[MultiTaskCollator, MultiTaskCollator]:
    """Training and evaluation collators: masked-LM evaluation masks the same positions every time."""
    options = {
        "pad_to_multiple_of": data_args.pad_to_multiple_of,
        "masking": Masking.of(tokenizer),
        "max_length": data_args.max_seq_length,
    }
    return (
        MultiTaskCollator(tokenizer.pad_token_id, **options),
        MultiTaskCollator(tokenizer.pad_token_id, fixed_masks=True, **options),
    )


def main_process(args: CaMtlTrainingArguments) -> bool:
    return args.process_index == 0


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> CaMtlTrainer:
    stop = GracefulStop().install()  # SIGINT and SIGTERM end the run with one line
    # host memory: each step reuses what the last one freed (camtl/training/allocator.py)
    retain_freed_memory()
    model_args, data_args, args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if main_process(args) else logging.WARNING,
    )
    hf_logging.set_verbosity_warning()

    saved = read_saved_config(model_args.model_name_or_path)
    plan = plan_tasks(data_args.tasks, data_args.task_file, saved, training=args.do_train)
    if data_args.max_seq_length is None:  # predicting from a checkpoint needs no --max_seq_length
        data_args.max_seq_length = saved.get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH)
    sampler_name = data_args.resolve_sampler()
    settings = run_settings(model_args, data_args, args, plan.trained, sampler_name)
    resume = check_inputs(model_args, data_args, args, plan, settings)
    output_dir = results_dir(args)  # a run without training never writes over another run's results

    set_seed(args.seed)  # the conditional modules and heads are initialised when the model is built
    model, tokenizer, report = build_model(model_args, data_args, plan.trained)
    redirect_outputs(args, output_dir)
    if main_process(args):
        logger.info("model parameters\n%s", format_parameter_report(report))
        output_dir.mkdir(parents=True, exist_ok=True)
    replacing = (
        replacing_earlier_run(output_dir, resume, main_process(args), args.world_size)
        if args.do_train
        else nullcontext()
    )
    with replacing as replacement:  # a failure from here on leaves the earlier run in place
        train_sets, dev_sets, test_sets, sampler = load_data(data_args, args, plan, tokenizer, sampler_name)
        collator, eval_collator = collators(tokenizer, data_args)
        trainer = CaMtlTrainer(
            model=model,
            args=args,
            train_sets=train_sets,
            dev_sets=dev_sets,
            task_sampler=sampler,
            collator=collator,
            eval_collator=eval_collator,
            processing_class=tokenizer,
            run_id=replacement.run_id if replacement else None,
            run_settings=settings,
            callbacks=[stop],
        )
        with writing_results(output_dir):
            write_results(trainer, replacement, resume, stop, output_dir, report, test_sets, eval_collator)
    return trainer


def write_results(
    trainer, replacement, resume, stop, output_dir: Path, report: dict, test_sets: dict, collator
) -> None:
    """Train, evaluate and predict as the flags ask, writing each result into ``output_dir``."""
    args = trainer.args
    if main_process(args):
        (output_dir / "parameter_report.json").write_text(json.dumps(report, indent=2))
    if args.do_train:
        train(trainer, resume, stop, output_dir)
        replacement.discard_earlier()  # the new model is saved: it no longer needs the earlier one
    if args.do_eval:
        evaluated_now = trainer.evaluations and trainer.evaluations[-1]["step"] == trainer.state.global_step
        if not evaluated_now:
            trainer.evaluate()
        if main_process(args):
            write_evaluation_report(trainer, output_dir)
    if args.do_predict:
        predict(trainer, test_sets, collator, output_dir, main_process(args))


def build_model(model_args, data_args, tasks: list[str]):
    """The model (frozen as asked), its tokenizer and its parameter report."""
    tokenizer = load_tokenizer(model_args.model_name_or_path)  # first: its checks are cheap, the weights not
    model = load_model(
        model_args.model_name_or_path,
        tasks,
        layout=model_args.layout,
        max_seq_length=data_args.max_seq_length,
        **model_args.model_options(),
    )
    if model_args.freeze_encoder_layers:
        freeze_encoder_layers(model, model_args.freeze_encoder_layers)
    return model, tokenizer, parameter_report(model)


def load_data(data_args, args, plan: TaskPlan, tokenizer, sampler_name: str):
    """Tokenized training, dev and test sets the flags need, and the task sampler for training."""

    def features(task: str, split: str, limit: int | None):
        return load_features(
            task_data_dir(task, data_args.data_dir),
            task,
            split,
            tokenizer,
            data_args.max_seq_length,
            cache_dir=data_args.features_cache_dir,
            max_examples=limit,
            overwrite_cache=data_args.overwrite_cache,
        )

    train_sets = (
        {t: features(t, "train", data_args.max_train_samples) for t in plan.trained} if args.do_train else {}
    )
    needs_dev = args.do_eval or args.eval_strategy != "no"
    dev_sets = (
        {t: features(t, "dev", data_args.max_eval_samples) for t in plan.evaluated} if needs_dev else {}
    )
    predicted = available_test_tasks(plan.predicted, data_args) if args.do_predict else []
    test_sets = {t: features(t, "test", data_args.max_predict_samples) for t in predicted}
    sampler = None
    if args.do_train:
        sampler = build_sampler(
            sampler_name,
            [len(f) for f in train_sets.values()],
            args.per_device_train_batch_size,
            args.data_seed if args.data_seed is not None else args.seed,
            percent_of_max_data_size=data_args.percent_of_max_data_size,
            temperature=data_args.sampling_temperature,
            uniform_mt_sampling=data_args.uniform_mt_sampling,
            mtu_scoring_mode=data_args.mtu_scoring_mode,
            sampling_weights=data_args.sampling_weight_of(list(train_sets)),
        )
        if args.train_sampling_strategy == "group_by_length":
            sampler.grouped_by_length(torch.cat([f.lengths for f in train_sets.values()]))
        logger.info("task sampling: %s, %d steps per epoch", sampler_name, len(sampler))
    return train_sets, dev_sets, test_sets, sampler


def train(trainer: CaMtlTrainer, resume: Path | None, stop: GracefulStop, output_dir: Path) -> None:
    """Train (resuming when asked), then save the final model, the train metrics (train_results.json, as
    the Hugging Face example scripts write it; a resumed run's cover its last part) and the task mix."""
    if resume:
        trainer.load_sampling_state(str(resume))
    metrics = trainer.train_or_restore(str(resume) if resume else None)
    stop.raise_if_stopped()  # after a SIGTERM the checkpoint is saved and the run ends here
    trainer.save_model()
    if metrics is not None:
        trainer.save_metrics("train", metrics | ({"resumed_from_checkpoint": str(resume)} if resume else {}),
                             combined=False)  # fmt: skip
    usage = trainer.sampling_summary()
    if main_process(trainer.args):
        (output_dir / "sampling_summary.json").write_text(json.dumps(usage, indent=2))


def write_evaluation_report(trainer: CaMtlTrainer, output_dir: Path) -> None:
    """eval_results.json: the last evaluation; eval_history.json: all of them and the best by GLUE average."""
    last = trainer.evaluations[-1]
    best = trainer.best_evaluation()
    (output_dir / "eval_results.json").write_text(json.dumps(last["results"], indent=2))
    rule = "highest average" if "average" in best["results"] else "highest glue_average"
    history = {"evaluations": trainer.evaluations, "best": {"rule": rule, **best}}
    checkpoint = output_dir / f"checkpoint-{best['step']}"
    if checkpoint.is_dir():
        history["best"]["checkpoint"] = str(checkpoint)
    (output_dir / "eval_history.json").write_text(json.dumps(history, indent=2))
    print(format_results_table(last["results"]))
    if len(trainer.evaluations) > 1:
        score = selection_score(best["results"])  # -inf: every evaluation's average is undefined
        shown = f"{score:.4f}" if score != float("-inf") else "undefined"
        print(f"best evaluation ({rule}): step {best['step']}, {shown}")


def available_test_tasks(tasks: list[str], data_args: DataArguments) -> list[str]:
    """Tasks to predict whose test file exists; a warning names the missing ones (GLUE mirrors lack some)."""
    available, missing = [], []
    test_file = {task: split_path(task_data_dir(task, data_args.data_dir), task, "test") for task in tasks}
    for task in tasks:
        exists = split_exists(task_data_dir(task, data_args.data_dir), task, "test")
        (available if exists else missing).append(task)
    if missing:
        files = ", ".join(str(test_file[t]) for t in missing)
        logger.warning(
            "no test file for %s (%s): their submission files are not written", ", ".join(missing), files
        )
    return available


def predict(trainer: CaMtlTrainer, test_sets: dict, collator, output_dir: Path, is_main: bool) -> None:
    """The GLUE leaderboard files (zipped, unless --max_predict_samples cut a test set short) and
    predictions/<task>.jsonl for every task with a test split."""
    predictions = predict_tasks(
        trainer.model,
        test_sets,
        collator,
        trainer.args.per_device_eval_batch_size,
        autocast=lambda: mixed_precision(trainer.args, trainer.model.device),
    )
    glue = {task: values for task, values in predictions.items() if TASKS[task].submission_file}
    others = {task: values for task, values in predictions.items() if not TASKS[task].submission_file}
    if is_main and glue:
        settings = trainer.run_settings
        partial = cut_short(list(glue), settings.get("data_dir"), settings.get("max_predict_samples"))
        archive = write_submission(glue, output_dir, partial)
        if archive is not None:
            files = ", ".join(TASKS[t].submission_file for t in glue)
            logger.info("GLUE submission: %s (%s)", archive, files)
    if is_main and others:
        files = write_predictions(others, output_dir)
        logger.info("predictions: %s", ", ".join(str(path) for path in files))


def _mp_fn(index: int) -> None:
    """Entry point for torch_xla's xla_spawn.py launcher (one process per TPU core)."""
    main()


if __name__ == "__main__":
    main()
