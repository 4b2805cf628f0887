"""Where commands write: every output location is checked before any work is done (torch-free).

A command calls :func:`check_output_path` for each ``--out`` as soon as its arguments are parsed:
an output that is one of the command's inputs, or whose extension the command cannot write, is a
usage error (exit 2); one that cannot be written (a path under a file, a read-only place, a
directory where a file is expected) is an :class:`~archspec.errors.OutputError` (exit 6). Missing
parent directories are fine: they are created when the output is written. :func:`writing` turns
an ``OSError`` while writing into the same one-line error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from .errors import OutputError, UsageError

#: the formats ``archspec predict`` writes, by extension
PREDICTION_FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")
#: the formats ``archspec plot`` draws to (matplotlib picks the format from the extension)
PLOT_FORMATS = (".png", ".svg", ".pdf")

#: what a run directory holds that commands read (``preprocess/`` and ``checkpoints/`` whole)
RUN_FILES = ("spec.yaml", "resolved_spec.json", "source.json", "metrics.jsonl", "baseline.json")
RUN_DIRS = ("preprocess", "checkpoints")


def run_inputs(run_dir) -> dict:
    """The files and folders of a run directory that a command reads, labelled for messages."""
    root = Path(run_dir)
    out = {root / f: f"a file of the run {run_dir}" for f in RUN_FILES}
    out.update({root / d: f"inside the run {run_dir} ({d}/)" for d in RUN_DIRS})
    return out


def _real(path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_path(path, *, inputs: Mapping | Iterable = (), kinds: Iterable[str] | None = None,
                      directory: bool = False, option: str = "--out") -> Path:
    """Refuse an output location before any work is done.

    Args:
        path: where the command will write (a file, or a folder with ``directory=True``).
        inputs: what the command reads: paths, or ``{path: "the data file"}`` for the message. A
            folder among them protects everything inside it.
        kinds: the file extensions the command can write (``(".csv", ".jsonl")``); ``None`` for any.
        directory: ``path`` is a folder the command writes into (created when missing).
        option: the option's name, for messages.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UsageError: ``path`` is (or, for a protected folder, lies inside) one of ``inputs``, or its
            extension is not one of ``kinds``.
        OutputError: ``path`` cannot be written: it lies under a file, in a read-only place, or is
            a folder where a file is expected (or the reverse).
    """
    raw = str(path)
    if not raw.strip():
        raise UsageError(f"{option}: empty path")
    p = Path(raw).expanduser()
    if kinds is not None and not directory:
        kinds = tuple(kinds)
        suffix = p.suffix.lower()
        if suffix not in kinds:
            what = f"extension '{suffix}'" if suffix else "no extension"
            raise UsageError(f"{option} {raw}: {what} — the format follows the extension: use "
                             + ", ".join(kinds))
    labels = dict(inputs) if isinstance(inputs, Mapping) else {i: "an input of this command" for i in inputs}
    real = _real(p)
    for inp, label in labels.items():
        if inp is None:
            continue
        q = _real(inp)
        if real == q or (q.is_dir() and _inside(real, q)):
            where = "is" if real == q else "lies"
            raise UsageError(f"{option} {raw} {where} {label}: writing there would destroy an input — "
                             "choose another path")
    if p.exists():
        if directory and not p.is_dir():
            raise OutputError(f"cannot write to {raw}: it is a file, not a directory — give a directory for {option}")
        if not directory and p.is_dir():
            raise OutputError(f"cannot write {raw}: it is a directory — give a file name for {option}")
        _probe(p if directory else p.parent, raw)
        if not directory and not os.access(p, os.W_OK):
            raise OutputError(f"cannot write {raw}: permission denied")
        return p
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"cannot write {raw}: {anc} is a file, not a directory")
    _probe(anc, raw)
    return p


def _probe(folder: Path, raw: str) -> None:
    """Create and delete a temporary file in ``folder``: the one sure test that it is writable."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".archspec-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {raw}: {folder} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def writing(path):
    """Create ``path``'s parent folders, then turn an ``OSError`` raised while writing it into an
    :class:`~archspec.errors.OutputError` (one ``archspec: error:`` line, exit 6)."""
    try:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        yield Path(path).expanduser()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
