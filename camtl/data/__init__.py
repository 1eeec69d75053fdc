"""Data: from a task's files to the batches the model takes.

splits.py        reading GLUE files into Examples; the check behind ``python -m camtl.data check``
__main__.py      ``python -m camtl.data check``
readers.py       reading jsonl, csv/tsv, conll, text and saved datasets into Examples
examples.py      Examples: the parsed rows of one split
sources.py       which --data_dir holds each task
tokenization.py  tokenizing Examples of every task type
features.py      TaskFeatures, the feature cache, the dataset of one task
collation.py     mixed batches of every task type, masked-LM masking, selecting examples
download.py      the GLUE downloader behind download_glue_data.py

Imports: camtl.errors and camtl.tasks only; never camtl.model, camtl.training, camtl.bench or camtl.api
(tests/test_layout.py). Re-exported below are the names that read data without torch, so that
``python -m camtl.data check`` stays light; the tokenizing, caching and collating names are imported
from their modules.
"""

from camtl.data.examples import Examples
from camtl.data.readers import read_examples
from camtl.data.sources import task_data_dir
from camtl.data.splits import (
    DOWNLOAD_HINT,
    SPLITS,
    check_data_dir,
    is_declared,
    read_split,
    require_split,
    split_exists,
    split_path,
)

__all__ = [
    "DOWNLOAD_HINT",
    "SPLITS",
    "Examples",
    "check_data_dir",
    "is_declared",
    "read_examples",
    "read_split",
    "require_split",
    "split_exists",
    "split_path",
    "task_data_dir",
]
