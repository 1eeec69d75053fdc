"""Choosing the precision: what the CPU reports and measures decides ``auto``; bf16 without native support
and fp16 off CUDA are refused; every answer is tried by injecting what the CPU reports, so the logic is
covered on any machine. The bf16 run itself is in test_scale.py (where the CPU has native bf16)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtl.errors import UsageError
from camtl.training.arguments import CaMtlTrainingArguments
from camtl.training.precision import (
    BF16_MIN_SPEEDUP,
    CpuReport,
    autocast,
    choose_precision,
    gemm_rate,
    this_cpu,
)

REPO = Path(__file__).resolve().parent.parent
AMD_EPYC = CpuReport.of({"avx512_f": True, "avx512_bf16": True, "amx_bf16": False}, "AMD EPYC")
SAPPHIRE = CpuReport.of({"avx512_bf16": True, "amx_bf16": True, "amx_tile": True}, "Intel Xeon (AMX)")
GRAVITON = CpuReport.of({"bf16": True, "sve_bf16": True, "architecture": "arm64"}, "Neoverse")
NO_BF16 = CpuReport.of({"avx2": True, "avx512_f": True, "avx512_bf16": False}, "old Xeon")


def test_the_native_bf16_flags_are_read_from_what_pytorch_reports():
    assert AMD_EPYC.bf16_flags == ("avx512_bf16",) and AMD_EPYC.native_bf16
    assert SAPPHIRE.bf16_flags == ("avx512_bf16", "amx_bf16")
    assert GRAVITON.native_bf16 and not NO_BF16.native_bf16
    assert not CpuReport.of({}, "unknown").native_bf16


@pytest.mark.parametrize(
    ("cpu", "speedup", "expected"),
    [
        (AMD_EPYC, 2.4, "bf16"),  # native and measured faster
        (AMD_EPYC, 0.54, "fp32"),  # native but slower (AVX512_BF16 without AMX, measured on a Xeon)
        (AMD_EPYC, BF16_MIN_SPEEDUP, "bf16"),
        (NO_BF16, None, "fp32"),  # nothing native: no measurement needed
    ],
)
def test_auto_takes_bf16_only_where_it_is_native_and_measured_faster(cpu, speedup, expected):
    choice = choose_precision("auto", "cpu", cpu=cpu, speedup=speedup)
    assert choice.precision == expected and choice.hardware == cpu.name
    assert choice.bf16_speedup == speedup and choice.requested == "auto"


def test_bf16_is_refused_in_one_line_where_it_would_be_emulated():
    with pytest.raises(UsageError) as refused:
        choose_precision("bf16", "cpu", cpu=NO_BF16)
    message = str(refused.value)
    assert "\n" not in message and "old Xeon" in message and "no native bf16" in message
    assert "--precision fp32 or auto" in message
    # native but slower: the explicit choice is kept, with a warning
    assert choose_precision("bf16", "cpu", cpu=AMD_EPYC, speedup=0.5).precision == "bf16"


def test_fp16_needs_cuda_and_fp32_is_always_fp32():
    with pytest.raises(UsageError, match="--fp16 needs a CUDA GPU"):
        choose_precision("fp16", "cpu", cpu=AMD_EPYC)
    assert choose_precision("fp32", "cpu", cpu=AMD_EPYC).precision == "fp32"
    with pytest.raises(UsageError, match="not one of"):
        choose_precision("fp8", "cpu", cpu=AMD_EPYC)


def test_training_arguments_resolve_the_precision_and_the_trainer_flags(tmp_path):
    args = CaMtlTrainingArguments(output_dir=str(tmp_path), report_to="none", precision="fp32")
    assert (args.precision, args.bf16, args.fp16) == ("fp32", False, False)
    auto = CaMtlTrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert auto.precision in ("fp32", "bf16") and auto.bf16 == (auto.precision == "bf16")
    assert auto.precision_choice.native_bf16 == this_cpu().native_bf16
    with pytest.raises(UsageError, match="name different precisions"):
        CaMtlTrainingArguments(output_dir=str(tmp_path), report_to="none", precision="fp32", bf16=True)


def test_a_conflicting_precision_is_refused_by_run_py_before_loading(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "--model_name_or_path", "CA-MTL-mini", "--data_dir", str(tmp_path),
         "--output_dir", str(tmp_path / "out"), "--do_train", "--bf16", "--precision", "fp32"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --bf16 and --precision fp32")


def test_autocast_is_none_for_fp32_and_bf16_otherwise():
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_the_gemm_rate_is_a_plausible_flop_rate():
    rate = gemm_rate(torch.float32, size=128, seconds=0.01)
    assert 1e8 < rate < 1e14  # a CPU core does between 0.1 GFLOP/s and 100 TFLOP/s


def test_the_precision_benchmark_measures_gemms_steps_and_the_auto_choice(tmp_path):
    output = tmp_path / "precision.md"
    result = subprocess.run(
        [sys.executable, "-m", "camtl.bench", "precision", "--quick", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(output.with_suffix(".json").read_text())
    (gemm,) = measured["gemm"]
    assert gemm["fp32"] > 0 and gemm["bf16_vs_fp32"] == pytest.approx(gemm["bf16"] / gemm["fp32"])
    (step,) = measured["training_step"]
    assert step["seconds"]["fp32"] > 0 and step["seconds"]["bf16"] > 0
    assert step["tokens"] == 32 * 64 and step["non_embedding_parameters"] > 6 * 12 * 384**2  # 6 layers of 384
    choice = measured["auto"]["1"]
    assert choice["precision"] == (
        "bf16" if this_cpu().native_bf16 and choice["bf16_speedup"] >= 1.15 else "fp32"
    )
    assert measured["emulated_gemm"]["measured"] == bool(torch.cpu.get_capabilities().get("avx512_f"))
    report = output.read_text()
    assert "| 1 | 256 |" in report and "python -m camtl.bench precision --quick" in report


def test_the_bf16_measurement_is_made_once_per_machine_and_kept(tmp_path, monkeypatch):
    from camtl.training import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []
    monkeypatch.setattr(precision, "measure_bf16_speedup", lambda: measured.append(1) or 2.0)
    first = choose_precision("auto", "cpu", cpu=AMD_EPYC)
    again = choose_precision("auto", "cpu", cpu=AMD_EPYC)
    assert first.precision == again.precision == "bf16" and len(measured) == 1
    kept = json.loads(precision.speedup_cache_file().read_text())
    assert list(kept.values()) == [2.0] and "AMD EPYC" in next(iter(kept))
    precision.speedup_cache_file().write_text("{not json")  # unreadable: measured again and rewritten
    assert choose_precision("auto", "cpu", cpu=AMD_EPYC).precision == "bf16" and len(measured) == 2
    assert json.loads(precision.speedup_cache_file().read_text())


def test_the_speedup_measurement_is_a_ratio_of_gemm_rates():
    from camtl.training.precision import measure_bf16_speedup

    assert 0.01 < measure_bf16_speedup(size=64, repeats=2) < 100
