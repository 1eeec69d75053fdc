#!/usr/bin/env bash
# The four multi-task scenarios of docs/tasks.md: train, evaluate, predict, then reload the saved
# model and evaluate it again. Each run's table goes to results/scenarios/<name>.txt, with its command.
# Usage: bash scripts/run_scenarios.sh [name ...]   (default: all four; about 1-2 h on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
COMMON=(--model_name_or_path CA-MTL-mini --data_dir ../shared/glue ../shared/data --max_seq_length 128
        --per_device_train_batch_size 16 --learning_rate 1e-4 --train_sampling_strategy group_by_length
        --max_eval_samples 1000 --max_predict_samples 200 --logging_steps 100 --save_strategy no
        --report_to none --seed 1 --overwrite_output_dir --do_train --do_eval --do_predict)
declare -A FLAGS=(
  [stsb-rte-csqa]="--tasks sts-b rte commonsenseqa --max_steps 400"
  [sst2-wikitext-mlm]="--tasks sst-2 wikitext2-mlm --task_weights wikitext2-mlm=0.5 --max_steps 200"
  [superglue-task-file]="--task_file examples/superglue_tasks.yaml --max_steps 200"
  [glue-superglue-wnut-mtu]="--tasks cola sst-2 mrpc sts-b qqp mnli qnli rte wnli cb copa wic wnut17 --use_mt_uncertainty --max_steps 120"
)
for name in "${@:-stsb-rte-csqa sst2-wikitext-mlm superglue-task-file glue-superglue-wnut-mtu}"; do
  for scenario in $name; do
    out=output/scenarios/$scenario
    # shellcheck disable=SC2206  # the flags are words on purpose
    command=("$PY" run.py "${COMMON[@]}" --output_dir "$out" ${FLAGS[$scenario]})
    start=$(date +%s)
    "${command[@]}" > "$out.log" 2>&1 || { echo "scenario $scenario failed: see $out.log" >&2; exit 1; }
    seconds=$(( $(date +%s) - start ))
    reload=("$PY" run.py --model_name_or_path "$out" --data_dir ../shared/glue ../shared/data
            --output_dir "$out-reloaded" --max_eval_samples 1000 --report_to none --do_eval)
    "${reload[@]}" > "$out-reloaded.log" 2>&1 || { echo "reload of $scenario failed" >&2; exit 1; }
    same=$(cmp -s "$out/eval_results.json" "$out-reloaded/eval_results.json" && echo yes || echo NO)
    {
      echo "\$ ${command[*]}"
      echo "(${seconds} s on $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at the end)"
      "$PY" -c "import json, sys; from camtl.training.metrics import format_results_table as table
print(table(json.load(open(sys.argv[1]))))" "$out/eval_results.json"
      echo "reloaded from $out and evaluated again: same eval_results.json: $same"
      echo "predictions: $(ls "$out"/predictions 2>/dev/null | tr '\n' ' ')$(ls "$out"/*.zip 2>/dev/null)"
    } > "results/scenarios/$scenario.txt"
    cat "results/scenarios/$scenario.txt"
  done
done
