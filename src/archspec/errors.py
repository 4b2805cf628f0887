"""Diagnostics and the exception tree.

Every problem archspec finds in a user's spec or data is a :class:`Diagnostic`: a code, a
severity, a YAML path, where it is in the file, what is wrong and what to do. Stages collect
diagnostics and raise once (torchtune's ``ConfigError`` pattern), so a user sees every problem
in one run.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

ERROR = "error"
WARNING = "warning"
NOTE = "note"
SEVERITIES = (ERROR, WARNING, NOTE)

Path = tuple  # a YAML path: tuple of str keys and int indices

# Exit codes of the command line, defined here only: each error class below carries its own.
EXIT_OK = 0  # success
EXIT_INVALID = 1  # a spec is invalid (or another user error without its own code)
EXIT_USAGE = 2  # bad command-line arguments
EXIT_DATA = 3  # the data does not match the spec
EXIT_CHECKPOINT = 4  # a run directory or checkpoint is missing, corrupt or does not fit
EXIT_TRAINING = 5  # training cannot go on
EXIT_OUTPUT = 6  # an output location cannot be written
EXIT_FETCH = 7  # `archspec fetch` could not get some pretrained files
EXIT_INTERRUPTED = 130  # Ctrl-C


def format_path(path: Sequence) -> str:
    """Render a YAML path the way a reader writes it: ``heads.tags.metrics[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``did you mean 'x'?`` suffix for a near-miss name, or ``''``."""
    choices = sorted(set(str(c) for c in choices))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a spec (or its data), located in the source file.

    Attributes:
        code: stable identifier, e.g. ``E-REF``; tests and tools key on it.
        severity: ``error``, ``warning`` or ``note``.
        path: YAML path of the offending value.
        message: what is wrong (found vs expected).
        hint: what to do about it.
        file: source file name, if known.
        line: 1-based line, 0 when unknown.
        col: 1-based column, 0 when unknown.
    """

    code: str
    severity: str
    path: tuple
    message: str
    hint: str = ""
    file: str = ""
    line: int = 0
    col: int = 0

    def render(self) -> str:
        """``file:line:col: severity[code]: path: message — hint``.

        The position is left out when unknown (a file that cannot be read), the path when the
        problem is with the document as a whole.
        """
        where = self.file or "<spec>"
        if self.line:
            where += f":{self.line}:{self.col}"
        text = f"{where}: {self.severity}[{self.code}]: "
        text += f"{format_path(self.path)}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" — {self.hint}"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = format_path(self.path)
        return d


def sort_key(d: Diagnostic):
    return (d.file, d.line or 10**9, d.col, SEVERITIES.index(d.severity), d.code)


def render_github(d: Diagnostic) -> str:
    """A GitHub Actions workflow annotation for one diagnostic."""
    kind = {"error": "error", "warning": "warning", "note": "notice"}[d.severity]
    msg = f"[{d.code}] " + (f"{format_path(d.path)}: " if d.path else "") + d.message
    if d.hint:
        msg += f" — {d.hint}"
    msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    props = f"file={_gh_prop(d.file)}" + (f",line={d.line},col={d.col}" if d.line else "")
    return f"::{kind} {props},title=archspec {d.code}::{msg}"


def _gh_prop(value: str) -> str:
    """Escape a workflow-command property value (file names may hold ``,`` or ``:``)."""
    return (value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            .replace(":", "%3A").replace(",", "%2C"))


class ArchspecError(ValueError):
    """Root of every error archspec raises for a user's mistake."""

    exit_code = EXIT_INVALID


class SpecError(ArchspecError):
    """A spec failed to load or check; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == ERROR] or self.diagnostics
        head = errors[0].render() if errors else "invalid spec"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(head + more)

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class UsageError(ArchspecError):
    """The command line asks for something that cannot be done (e.g. ``--out`` naming an input)."""

    exit_code = EXIT_USAGE


class OutputError(ArchspecError):
    """An output location cannot be written (a path under a file, a read-only place, ...)."""

    exit_code = EXIT_OUTPUT


class DataWarning(UserWarning):
    """Data that works but is probably not what was meant (e.g. label names holding spaces); the
    CLI prints it as one ``archspec: warning:`` line."""


class ShapeError(ArchspecError):
    """A built module produced a shape different from the one the checker inferred."""


class BuildError(ArchspecError):
    """A validated spec could not be turned into modules (missing model files, etc.)."""


class DataError(ArchspecError):
    """The data does not match the spec (missing columns, bad labels, non-finite values)."""

    exit_code = EXIT_DATA


class CheckpointError(ArchspecError):
    """A run directory or checkpoint is missing, corrupt or does not match the spec."""

    exit_code = EXIT_CHECKPOINT


class TrainingError(ArchspecError):
    """Training cannot go on (e.g. a non-finite loss with ``on_nonfinite: error``)."""

    exit_code = EXIT_TRAINING


class FetchError(ArchspecError):
    """``archspec fetch`` could not get some pretrained files; the message names each one and why."""

    exit_code = EXIT_FETCH
