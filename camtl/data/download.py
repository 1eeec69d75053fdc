"""Download GLUE into the official layout, like the classic ``download_glue_data.py`` (jiant).

Files come from the official hosts or from a mirror (a local folder or an HTTP server) that holds the
official file names side by side. Every file is checked against a SHA-256 sum before it is used,
written to a temporary file first and renamed only when complete. MRPC is built from the MSR
paraphrase corpus and the standard list of dev IDs, as the classic script does.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from functools import cached_property
from pathlib import Path

from camtl.errors import UsageError, exits_cleanly_on_usage_error
from camtl.tasks import TASKS, canonical_task_name

GLUE_HOST = "https://dl.fbaipublicfiles.com/glue/data/"
SENTEVAL_HOST = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"

# Task folder -> the file that provides it. MRPC is assembled from the three MRPC_* files.
TASK_SOURCES: dict[str, str | None] = {
    "CoLA": "CoLA.zip",
    "SST-2": "SST-2.zip",
    "MRPC": None,
    "QQP": "QQP-clean.zip",
    "STS-B": "STS-B.zip",
    "MNLI": "MNLI.zip",
    "QNLI": "QNLIv2.zip",
    "RTE": "RTE.zip",
    "WNLI": "WNLI.zip",
    "diagnostic": "AX.tsv",
}
MRPC_TRAIN = "msr_paraphrase_train.txt"
MRPC_TEST = "msr_paraphrase_test.txt"
MRPC_DEV_IDS = "mrpc_dev_ids.tsv"

OFFICIAL_URLS: dict[str, str] = {
    **{name: GLUE_HOST + name for name in TASK_SOURCES.values() if name},
    MRPC_DEV_IDS: GLUE_HOST + MRPC_DEV_IDS,
    MRPC_TRAIN: SENTEVAL_HOST + MRPC_TRAIN,
    MRPC_TEST: SENTEVAL_HOST + MRPC_TEST,
}

# SHA-256 of the official files, from the `download_checksums` of huggingface/datasets
# datasets/glue/dataset_infos.json (same URLs as above). tensorflow/datasets
# tensorflow_datasets/url_checksums/glue.txt lists the same sums for the older firebasestorage copies
# (all but QQP-clean.zip, which it does not list; its AX.tsv entry is under a bit.ly link).
OFFICIAL_SHA256: dict[str, str] = {
    "CoLA.zip": "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff",
    "SST-2.zip": "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
    "QQP-clean.zip": "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0",
    "STS-B.zip": "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85",
    "MNLI.zip": "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633",
    "QNLIv2.zip": "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5",
    "RTE.zip": "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee",
    "WNLI.zip": "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46",
    "AX.tsv": "0e13510b1bb14436ff7e2ee82338f0efb0133ecf2e73507a697dc210db3f05fd",
    MRPC_DEV_IDS: "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
    MRPC_TRAIN: "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    MRPC_TEST: "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
}

MSR_COLUMNS = 5  # Quality, #1 ID, #2 ID, #1 String, #2 String
MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
CLASSIC_NAMES = "CoLA, SST, MRPC, QQP, STS, MNLI, QNLI, RTE, WNLI, diagnostic"
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def resolve_task_folders(spec: str) -> list[str]:
    """``all`` or comma-separated task names (classic or registry spellings) -> task folders, in order."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or [name.lower() for name in names] == ["all"]:
        return list(TASK_SOURCES)
    folders = set()
    for name in names:
        try:
            task = TASKS[canonical_task_name(name)]
            if not task.glue:
                raise UsageError(name)
            folders.add(task.folder)
        except UsageError:
            raise UsageError(
                f"unknown task '{name}' in --tasks: use 'all' or some of {CLASSIC_NAMES}"
            ) from None
    return [folder for folder in TASK_SOURCES if folder in folders]


def expected_files(folder: str) -> list[str]:
    """The split files the registry reads from a task folder; all present means the task is complete."""
    return sorted(
        {
            split.filename
            for task in TASKS.values()
            if task.folder == folder and task.glue
            for split in (task.train, task.dev, task.test)
            if split is not None
        }
    )


def is_complete(data_dir: Path, folder: str) -> bool:
    return all((data_dir / folder / name).is_file() for name in expected_files(folder))


def parse_sha256sums(text: str, origin: str) -> dict[str, str]:
    """Read ``sha256sum`` output (``<hex>  <name>``, binary-mode ``*name`` and ``./name`` accepted)."""
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*").removeprefix("./")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise UsageError(f"{origin} line {number} is not '<sha256>  <file name>': fix that line")
        sums[name] = digest.lower()
    return sums


def download_file(url: str, destination: Path, expected_sha256: str | None, failure_hint: str) -> None:
    """Copy ``url`` to ``destination`` through a temporary file, verifying its SHA-256 when known."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    announced = response.headers.get("Content-Length")
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except NETWORK_ERRORS as error:
                reason = getattr(error, "reason", None) or error
                raise UsageError(f"could not download {url} ({reason}): {failure_hint}") from None
        if announced is not None and int(announced) != size:
            raise UsageError(f"download of {url} stopped after {size} of {announced} bytes: re-run to retry")
        if expected_sha256 is None:
            print(f"  notice: no known SHA-256 for {destination.name}; it could not be verified")
        elif digest.hexdigest() != expected_sha256:
            raise UsageError(
                f"{destination.name} from {url} has SHA-256 {digest.hexdigest()}, expected {expected_sha256}:"
                " re-run to download it again, or if the mirror holds other bytes on purpose, list their sums"
                " in the mirror's SHA256SUMS"
            )
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def unpack(archive: Path, data_dir: Path) -> None:
    """Extract a zip into ``data_dir``, refusing members that would land outside it (zip-slip)."""
    root = data_dir.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise UsageError(
                        f"{archive.name} has a member '{member}' that would be written outside {data_dir}:"
                        " refusing to unpack it; replace the archive with the official one"
                    )
            zipped.extractall(root)
    except zipfile.BadZipFile:
        raise UsageError(
            f"{archive.name} is not a valid zip archive: replace it with the official one"
        ) from None


class GlueSource:
    """Where the files come from: the official hosts, or a mirror holding the official file names."""

    def __init__(self, mirror: str | None):
        if mirror is None:
            self.base = None
            self.hint = "without internet access, pass --mirror URL_OR_DIR (or set GLUE_MIRROR)"
            return
        if mirror.startswith(("http://", "https://", "file://")):
            self.base = mirror if mirror.endswith("/") else mirror + "/"
        elif Path(mirror).is_dir():
            self.base = Path(mirror).resolve().as_uri() + "/"
        else:
            raise UsageError(f"--mirror {mirror} is neither a URL nor an existing folder: pass one of those")
        self.hint = f"check that --mirror {mirror} is reachable and holds the official GLUE file names"

    def url(self, name: str) -> str:
        return OFFICIAL_URLS[name] if self.base is None else self.base + name

    @cached_property
    def sha256(self) -> dict[str, str]:
        """Official sums, replaced by the mirror's SHA256SUMS for the files it lists."""
        if self.base is None:
            return dict(OFFICIAL_SHA256)
        url = self.base + "SHA256SUMS"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise UsageError(f"could not read {url} (HTTP {error.code}): {self.hint}") from None
            return dict(OFFICIAL_SHA256)
        except NETWORK_ERRORS as error:
            if isinstance(getattr(error, "reason", None), FileNotFoundError):
                return dict(OFFICIAL_SHA256)
            raise UsageError(
                f"could not reach {url} ({getattr(error, 'reason', error)}): {self.hint}"
            ) from None
        return {**OFFICIAL_SHA256, **parse_sha256sums(text, url)}

    def fetch(self, name: str, destination: Path) -> None:
        expected_sha256 = self.sha256.get(name)
        print(f"  fetching {self.url(name)}")
        download_file(self.url(name), destination, expected_sha256, self.hint)


def _read_rows(path: Path, columns: int) -> list[list[str]]:
    """Tab-separated rows of a text file, line ends and surrounding blanks stripped, blank lines skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = line.strip().split("\t")
            if len(row) != columns:
                raise UsageError(
                    f"{path} line {number} has {len(row)} columns, expected {columns}: fix the file"
                )
            rows.append(row)
    if not rows:
        raise UsageError(f"{path} is empty: replace it with the official file")
    return rows


def _write_text(path: Path, lines: list[str]) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, path)


def build_mrpc(data_dir: Path, source: GlueSource, path_to_mrpc: Path | None) -> None:
    """Split the MSR training file into train/dev by the standard dev IDs; number the test rows.

    With ``path_to_mrpc`` the corpus files are read from there (unverified: any copy of the corpus
    will do), and so are the dev IDs when that folder has ``dev_ids.tsv`` or ``mrpc_dev_ids.tsv``.
    """
    mrpc_dir = data_dir / "MRPC"
    mrpc_dir.mkdir(parents=True, exist_ok=True)
    corpus_dir = path_to_mrpc or mrpc_dir
    for name in (MRPC_TRAIN, MRPC_TEST):
        if path_to_mrpc is None:
            source.fetch(name, mrpc_dir / name)
        elif not (path_to_mrpc / name).is_file():
            raise UsageError(f"--path_to_mrpc {path_to_mrpc} has no {name}: point it at the MSR corpus files")
    local_ids = [path_to_mrpc / name for name in ("dev_ids.tsv", MRPC_DEV_IDS)] if path_to_mrpc else []
    dev_ids_file = next((path for path in local_ids if path.is_file()), mrpc_dir / "dev_ids.tsv")
    if dev_ids_file not in local_ids:
        source.fetch(MRPC_DEV_IDS, dev_ids_file)

    dev_ids = {tuple(row) for row in _read_rows(dev_ids_file, 2)}
    header, *corpus = _read_rows(corpus_dir / MRPC_TRAIN, MSR_COLUMNS)
    # The header stays as the corpus has it (BOM included), as in the official MRPC train/dev files.
    train, dev = ["\t".join(header)], ["\t".join(header)]
    for row in corpus:
        (dev if (row[1], row[2]) in dev_ids else train).append("\t".join(row))
    _, *test_rows = _read_rows(corpus_dir / MRPC_TEST, MSR_COLUMNS)
    test = [MRPC_TEST_HEADER] + [f"{index}\t" + "\t".join(row[1:]) for index, row in enumerate(test_rows)]
    if len(dev) - 1 != len(dev_ids):
        print(f"  notice: {len(dev_ids)} dev IDs listed, {len(dev) - 1} of them found in {MRPC_TRAIN}")
    _write_text(mrpc_dir / "test.tsv", test)
    _write_text(mrpc_dir / "dev.tsv", dev)
    _write_text(mrpc_dir / "train.tsv", train)


def download_glue(
    data_dir: Path, folders: list[str], mirror: str | None = None, path_to_mrpc: Path | None = None
) -> None:
    """Fetch each task folder that is not complete yet into ``data_dir`` (official layout)."""
    source = GlueSource(mirror)
    if path_to_mrpc is not None and not path_to_mrpc.is_dir():
        raise UsageError(f"--path_to_mrpc {path_to_mrpc} is not a folder: pass the folder with the MSR files")
    data_dir.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        if is_complete(data_dir, folder):
            print(f"{folder}: complete, skipped")
            continue
        print(f"{folder}: downloading")
        name = TASK_SOURCES[folder]
        if folder == "MRPC":
            build_mrpc(data_dir, source, path_to_mrpc)
        elif name.endswith(".zip"):
            archive = data_dir / name
            source.fetch(name, archive)
            unpack(archive, data_dir)
            archive.unlink()
        else:
            source.fetch(name, data_dir / folder / expected_files(folder)[0])
        missing = [file for file in expected_files(folder) if not (data_dir / folder / file).is_file()]
        if missing:
            raise UsageError(
                f"{folder} is still missing {', '.join(missing)} after download: the archive must unpack"
                f" to {folder}/ as the official one does; replace it"
            )
    print(f"GLUE data ready in {data_dir}")


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="download_glue_data.py", description="Download GLUE into the official folder layout."
    )
    parser.add_argument(
        "--data_dir", type=Path, default=Path("glue_data"), help="where to put the task folders"
    )
    parser.add_argument(
        "--tasks", default="all", help=f"'all' or comma-separated names from: {CLASSIC_NAMES}"
    )
    parser.add_argument(
        "--path_to_mrpc",
        type=Path,
        default=None,
        help=f"folder with {MRPC_TRAIN}, {MRPC_TEST} (optionally dev_ids.tsv) to use, not downloaded",
    )
    parser.add_argument(
        "--mirror",
        default=os.environ.get("GLUE_MIRROR") or None,
        help="folder or http(s) URL holding the official file names side by side (CoLA.zip, ..., AX.tsv,"
        " MSR files, mrpc_dev_ids.tsv; optional SHA256SUMS); default: $GLUE_MIRROR, else the official hosts",
    )
    args = parser.parse_args(argv)
    download_glue(args.data_dir, resolve_task_folders(args.tasks), args.mirror, args.path_to_mrpc)
