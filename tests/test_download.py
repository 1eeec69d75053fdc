"""download_glue_data.py end to end through real HTTP and local mirrors built from the fixtures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from camtl.data.download import TASK_SOURCES, download_file, parse_sha256sums, resolve_task_folders
from camtl.errors import UsageError
from camtl.tasks import TASKS

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "glue"
SCRIPT = REPO / "download_glue_data.py"
MSR_FILES = ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt")


def write_sha256sums(mirror: Path) -> None:
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
        for path in sorted(mirror.iterdir())
        if path.name != "SHA256SUMS"
    ]
    (mirror / "SHA256SUMS").write_text("".join(lines))


def build_mirror(mirror: Path) -> Path:
    """The official file names side by side, each zip unpacking to its task folder."""
    mirror.mkdir()
    for folder, name in TASK_SOURCES.items():
        if name and name.endswith(".zip"):
            with zipfile.ZipFile(mirror / name, "w") as archive:
                for path in sorted((FIXTURES / folder).iterdir()):
                    archive.write(path, f"{folder}/{path.name}")
    shutil.copyfile(FIXTURES / "diagnostic" / "diagnostic.tsv", mirror / "AX.tsv")
    for name in MSR_FILES:
        shutil.copyfile(FIXTURES / "MRPC" / name, mirror / name)
    shutil.copyfile(FIXTURES / "MRPC" / "dev_ids.tsv", mirror / "mrpc_dev_ids.tsv")
    write_sha256sums(mirror)
    return mirror


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("glue") / "mirror")


@pytest.fixture
def serve():
    """Start an HTTP server on 127.0.0.1 for a folder; returns its URL and the list of paths requested."""
    servers = []

    def start(folder: Path) -> tuple[str, list[str]]:
        requests: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format, *args):
                requests.append(self.path)

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def download(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GLUE_MIRROR"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**environment, **(env or {})},
        timeout=120,
    )


def fixture_split_files() -> list[Path]:
    """Every split file the registry reads, relative to a data folder."""
    return sorted(
        {
            Path(task.folder) / split.filename
            for task in TASKS.values()
            if task.glue
            for split in (task.train, task.dev, task.test)
            if split is not None
        }
    )


def assert_same_as_fixtures(data_dir: Path) -> None:
    for relative in fixture_split_files():
        assert (data_dir / relative).read_bytes() == (FIXTURES / relative).read_bytes(), relative


def count_rows(path: Path, header: bool) -> int:
    lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return len(lines) - int(header)


def test_http_mirror_end_to_end_then_rerun_skips(mirror_dir, serve, tmp_path):
    url, requests = serve(mirror_dir)
    data_dir = tmp_path / "glue"

    result = download("--data_dir", str(data_dir), "--tasks", "all", "--mirror", url)
    assert result.returncode == 0, result.stderr
    assert_same_as_fixtures(data_dir)
    assert not list(data_dir.glob("*.zip")) and not list(data_dir.rglob("*.part"))
    fetched = {path.lstrip("/") for path in requests}
    assert fetched == {path.name for path in mirror_dir.iterdir()}

    check = subprocess.run(
        [sys.executable, "-m", "camtl.data", "check", "--data_dir", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["problems"] == []
    for name, task in TASKS.items():
        if not task.glue:
            continue
        for split in ("train", "dev", "test"):
            fmt = task.split(split)
            if fmt is not None:
                expected = count_rows(FIXTURES / task.folder / fmt.filename, fmt.header)
                assert report["tasks"][name][split] == expected, (name, split)

    requests_before = len(requests)
    rerun = download("--data_dir", str(data_dir), "--tasks", "all", "--mirror", url)
    assert rerun.returncode == 0, rerun.stderr
    assert len(requests) == requests_before
    assert rerun.stdout.count("complete, skipped") == len(TASK_SOURCES)


def test_local_folder_mirror_from_environment(mirror_dir, tmp_path):
    data_dir = tmp_path / "glue"
    result = download(
        "--data_dir",
        str(data_dir),
        "--tasks",
        "CoLA,sst,MRPC,STS,diagnostic",
        env={"GLUE_MIRROR": str(mirror_dir)},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in data_dir.iterdir()) == [
        "CoLA",
        "MRPC",
        "SST-2",
        "STS-B",
        "diagnostic",
    ]
    for folder in ("CoLA", "SST-2", "STS-B", "diagnostic", "MRPC"):
        for path in (FIXTURES / folder).glob("*.tsv"):
            if path.name != "dev_ids.tsv":
                assert (data_dir / folder / path.name).read_bytes() == path.read_bytes(), path


def test_wrong_sum_in_mirror_fails_without_leaving_files(mirror_dir, serve, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(mirror_dir, mirror)
    sums = (mirror / "SHA256SUMS").read_text()
    good = parse_sha256sums(sums, "test")["CoLA.zip"]
    (mirror / "SHA256SUMS").write_text(sums.replace(good, "0" * 64))
    url, _ = serve(mirror)
    data_dir = tmp_path / "glue"

    result = download("--data_dir", str(data_dir), "--tasks", "cola", "--mirror", url)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "CoLA.zip" in result.stderr and "SHA-256" in result.stderr and "Traceback" not in result.stderr
    assert [path for path in data_dir.rglob("*")] == []


def test_zip_member_escaping_data_dir_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "CoLA.zip", "w") as archive:
        archive.writestr("CoLA/train.tsv", "x\t1\t\tA fine sentence.\n")
        archive.writestr("../evil.txt", "escaped")
    write_sha256sums(mirror)
    data_dir = tmp_path / "deep" / "glue"

    result = download("--data_dir", str(data_dir), "--tasks", "CoLA", "--mirror", str(mirror))
    assert result.returncode == 2
    assert "../evil.txt" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (data_dir / "CoLA").exists()


def test_unreachable_mirror_gives_one_line_naming_mirror(closed_port_url, tmp_path):
    result = download("--data_dir", str(tmp_path / "glue"), "--tasks", "RTE", "--mirror", closed_port_url)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--mirror" in result.stderr and "Traceback" not in result.stderr


def test_path_to_mrpc_builds_mrpc_without_network(closed_port_url, tmp_path):
    corpus = tmp_path / "msr"
    corpus.mkdir()
    for name in (*MSR_FILES, "dev_ids.tsv"):
        shutil.copyfile(FIXTURES / "MRPC" / name, corpus / name)
    data_dir = tmp_path / "glue"

    result = download(
        "--data_dir",
        str(data_dir),
        "--tasks",
        "mrpc",
        "--path_to_mrpc",
        str(corpus),
        "--mirror",
        closed_port_url,
    )
    assert result.returncode == 0, result.stderr
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (data_dir / "MRPC" / name).read_bytes() == (FIXTURES / "MRPC" / name).read_bytes(), name


def test_path_to_mrpc_with_a_malformed_row_names_the_line(tmp_path):
    corpus = tmp_path / "msr"
    corpus.mkdir()
    for name in (*MSR_FILES, "dev_ids.tsv"):
        shutil.copyfile(FIXTURES / "MRPC" / name, corpus / name)
    with open(corpus / MSR_FILES[0], "a", encoding="utf-8") as corpus_file:
        corpus_file.write("1\t123\tonly three columns\r\n")

    result = download("--data_dir", str(tmp_path / "glue"), "--tasks", "MRPC", "--path_to_mrpc", str(corpus))
    assert result.returncode == 2
    assert "msr_paraphrase_train.txt line 38 has 3 columns" in result.stderr


def test_task_names_follow_the_classic_script():
    assert resolve_task_folders("all") == list(TASK_SOURCES)
    assert resolve_task_folders("diagnostic,sts,SST,CoLA") == ["CoLA", "SST-2", "STS-B", "diagnostic"]
    assert resolve_task_folders("MNLI,mnli-mm") == ["MNLI"]
    with pytest.raises(UsageError, match="unknown task 'SNLI'.*CoLA, SST"):
        resolve_task_folders("CoLA,SNLI")


def test_sha256sums_accepts_sha256sum_output_variants():
    digest = "ab" * 32
    sums = parse_sha256sums(f"{digest}  ./CoLA.zip\n\n{digest.upper()} *AX.tsv\n", "SHA256SUMS")
    assert sums == {"CoLA.zip": digest, "AX.tsv": digest}
    with pytest.raises(UsageError, match="SHA256SUMS line 1"):
        parse_sha256sums("not-a-digest  CoLA.zip\n", "SHA256SUMS")


def test_file_without_known_sum_is_accepted_with_a_notice(tmp_path, capsys):
    source = tmp_path / "AX.tsv"
    source.write_text("index\tsentence1\tsentence2\n")
    destination = tmp_path / "out" / "diagnostic.tsv"

    download_file(source.as_uri(), destination, None, "hint")
    assert destination.read_bytes() == source.read_bytes()
    assert "could not be verified" in capsys.readouterr().out
