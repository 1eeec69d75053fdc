"""MkDocs hook: the task-file page's reference is checked against, and partly generated from, the code.

The page's hand-written tables of keys and fields must name exactly the keys and fields of the schema in
``camtl/tasks/task_file.py`` (pydantic models), or the build fails; the schema's own reference (every key,
its type and meaning) and the allowed types, metrics (``camtl/tasks/spec.py``) and file formats are
rendered from the code at the markers below.
"""

from __future__ import annotations

import re

from mkdocs.exceptions import PluginError

PAGE = "task-files.md"
MARKER = "<!-- generated: task-file values -->"
SCHEMA_MARKER = "<!-- generated: task-file schema -->"


def accepted() -> dict:
    """What the task-file reader accepts, from the code itself."""
    from camtl.tasks import task_file
    from camtl.tasks.spec import DEFAULT_METRIC, METRICS, TASK_TYPES

    return {
        "keys": set(task_file.TaskFile.model_fields) | set(task_file.TaskEntry.model_fields),
        "fields": set(task_file.Fields.model_fields),
        "types": TASK_TYPES,
        "metrics": METRICS,
        "default_metric": DEFAULT_METRIC,
        "extensions": task_file.EXTENSIONS,
    }


def documented(markdown: str, heading: str) -> set[str]:
    """The names in the first column of the table under ``heading`` (each written as `name`)."""
    section = markdown.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)`", section, re.MULTILINE))


def values_table(code: dict) -> str:
    rows = ["| type | metrics (the default first) |", "|---|---|"]
    for kind in code["types"]:
        default = code["default_metric"][kind]
        others = [m for m in code["metrics"][kind] if m != default]
        rows.append(f"| `{kind}` | " + ", ".join(f"`{m}`" for m in [default, *others]) + " |")
    by_format: dict[str, list[str]] = {}
    for extension, fmt in code["extensions"].items():
        by_format.setdefault(fmt, []).append(f"`{extension}`")
    rows += ["", "| `format` | files ending in |", "|---|---|"]
    rows += [f"| `{fmt}` | {', '.join(extensions)} |" for fmt, extensions in by_format.items()]
    rows.append("| `dataset` | a folder: a dataset saved with Hugging Face `datasets`' `save_to_disk` |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    code = accepted()
    for heading, name in (("## Keys", "keys"), ("## Fields", "fields")):
        table = documented(markdown, heading)
        missing, extra = code[name] - table, table - code[name]
        if missing or extra:
            raise PluginError(
                f"{PAGE}: the {name} table differs from camtl/tasks/task_file.py:"
                f" undocumented {sorted(missing)}, not accepted {sorted(extra)}"
            )
    for marker in (MARKER, SCHEMA_MARKER):
        if marker not in markdown:
            raise PluginError(f"{PAGE}: the marker {marker!r} is missing")
    from camtl.tasks.task_file import format_reference

    return markdown.replace(MARKER, values_table(code)).replace(SCHEMA_MARKER, format_reference())
