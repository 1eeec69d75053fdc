import json
import subprocess
import sys
from pathlib import Path

import pytest

from camtl.data.sources import task_data_dir
from camtl.data.splits import check_data_dir, read_split
from camtl.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_bom_crlf_missing_newline_and_stray_quotes(tmp_path):
    write(
        tmp_path / "RTE" / "dev.tsv",
        '\ufeffindex\tsentence1\tsentence2\tlabel\r\n0\tHe said "hi.\tHe spoke.\tentailment\r\n'
        "\tNo id here.\tNothing.\tnot_entailment",
    )
    examples = read_split(tmp_path, "rte", "dev")
    assert examples.text_a == ['He said "hi.', "No id here."]
    assert examples.text_b == ["He spoke.", "Nothing."]
    assert examples.labels == [0.0, 1.0]
    assert examples.ids == ["0", ""]


def test_cola_has_no_header_and_reads_the_fourth_column(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv", "src\t1\t\tA fine sentence.\nsrc\t0\t*\tSentence fine a.\n")
    examples = read_split(tmp_path, "cola", "train")
    assert examples.text_a == ["A fine sentence.", "Sentence fine a."]
    assert examples.labels == [1.0, 0.0]
    assert examples.text_b is None


def test_malformed_training_rows_are_skipped_and_counted(tmp_path, caplog):
    write(
        tmp_path / "SST-2" / "train.tsv",
        "sentence\tlabel\ngood\t1\ntoo\tmany\tcolumns\nbad label\t7\nbad\t0\n",
    )
    examples = read_split(tmp_path, "sst-2", "train")
    assert examples.text_a == ["good", "bad"]
    assert examples.skipped == 2
    assert "skipped 2 malformed" in caplog.text


@pytest.mark.parametrize(
    ("row", "message"),
    [("only-one-column", "has 1 columns, expected 2"), ("text\tmaybe", "has label 'maybe'")],
)
def test_malformed_dev_row_is_an_error_naming_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "SST-2" / "dev.tsv", f"sentence\tlabel\nfine\t1\n{row}\n")
    with pytest.raises(UsageError, match=rf"{path}:3 {message}"):
        read_split(tmp_path, "sst-2", "dev")


def test_regression_label_outside_range_is_rejected_in_dev(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(tmp_path / "STS-B" / "dev.tsv", header + "0\tg\tf\ty\to\ts\ts\tA.\tB.\t7.5\n")
    with pytest.raises(UsageError, match="label '7.5'"):
        read_split(tmp_path, "sts-b", "dev")


def test_missing_split_names_the_file_and_the_downloader(tmp_path):
    with pytest.raises(UsageError, match=r"MNLI/test_matched.tsv.*download_glue_data.py"):
        read_split(tmp_path, "mnli", "test")


def test_max_examples_takes_the_first_rows(tmp_path):
    write(
        tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(10))
    )
    assert read_split(tmp_path, "sst-2", "train", max_examples=3).text_a == ["s0", "s1", "s2"]


def test_check_reports_problems_and_exits_2(tmp_path):
    write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nok\t1\nbroken\n")
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\nok\t1\n")
    report = check_data_dir(tmp_path, ["sst-2"])
    assert report["tasks"] == {"sst-2": {"train": 1}}
    assert len(report["problems"]) == 1 and "dev.tsv:3" in report["problems"][0]
    assert report["missing"] == [str(tmp_path / "SST-2" / "test.tsv")]
    result = subprocess.run(
        [sys.executable, "-m", "camtl.data", "check", "--data_dir", str(tmp_path), "--tasks", "SST2"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "PROBLEMS" in result.stdout and "dev.tsv:3" in result.stdout


# Published counts of ../shared/glue (its README); the check must report exactly these.
SHARED_GLUE_COUNTS = {
    "cola": {"train": 8551, "dev": 1043, "test": 1063},
    "sst-2": {"train": 67349, "dev": 872, "test": 1821},
    "mrpc": {"train": 3668, "dev": 408, "test": 1725},
    "sts-b": {"train": 5749, "dev": 1500, "test": 1379},
    "qqp": {"train": 8309, "dev": 2000},
    "mnli": {"train": 10471, "dev": 9815},
    "mnli-mm": {"dev": 9832},
    "qnli": {"train": 10293, "dev": 5463, "test": 5463},
    "rte": {"train": 2490, "dev": 277, "test": 3000},
    "wnli": {"train": 635, "dev": 71, "test": 146},
    "ax": {"test": 1104},
}


def test_check_on_shared_glue_reports_the_published_counts(shared_glue):
    result = subprocess.run(
        [sys.executable, "-m", "camtl.data", "check", "--data_dir", str(shared_glue), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tasks"] == SHARED_GLUE_COUNTS
    assert report["problems"] == []
    assert sorted(Path(p).name for p in report["missing"]) == [
        "test.tsv",
        "test_matched.tsv",
        "test_mismatched.tsv",
    ]
    assert report["labels"]["mnli"]["dev"] == {"contradiction": 3213, "entailment": 3479, "neutral": 3123}


def test_shared_glue_label_sets_and_empty_ids(shared_glue):
    mrpc = read_split(shared_glue, "mrpc", "train")  # header starts with a BOM
    assert set(mrpc.labels) == {0.0, 1.0}
    qqp_dev = read_split(shared_glue, "qqp", "dev")
    assert "" in qqp_dev.ids and len(qqp_dev) == 2000
    stsb = read_split(shared_glue, "sts-b", "dev")
    assert min(stsb.labels) == 0.0 and max(stsb.labels) == 5.0


def check(data_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "camtl.data", "check", "--data_dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("glue/RTE", "--data_dir {root}/glue/RTE is the RTE folder itself: pass its parent {root}/glue"),
        ("empty", "--data_dir {root}/empty is empty: get GLUE with"),
        ("notes", "--data_dir {root}/notes holds no task folder (such as RTE/ or SST-2/): pass the folder"),
    ],
)
def test_check_without_a_task_folder_is_one_line_and_exits_2(tmp_path, folder, message):
    write(tmp_path / "glue" / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    (tmp_path / "empty").mkdir()
    write(tmp_path / "notes" / "README.txt", "not GLUE")
    result = check(tmp_path / folder)
    assert (result.returncode, result.stdout) == (2, "")
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {message.format(root=tmp_path)}")


def test_a_task_folder_as_data_dir_names_its_parent(tmp_path):
    rte = write(tmp_path / "glue" / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n").parent
    with pytest.raises(
        UsageError, match=rf"^--data_dir {rte} is the RTE folder itself: pass its parent {rte.parent}$"
    ):
        read_split(rte, "rte", "dev")
    with pytest.raises(UsageError, match=rf"task 'rte': --data_dir {rte} is the RTE folder itself"):
        task_data_dir("rte", [rte, tmp_path / "data"])
    (rte / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    loose = rte.rename(tmp_path / "loose")  # the files without their folder
    with pytest.raises(
        UsageError, match=rf"--data_dir {loose} holds train.tsv, dev.tsv itself, not in a RTE"
    ):
        read_split(loose, "rte", "dev")
