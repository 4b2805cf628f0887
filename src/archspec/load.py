"""Stage 1: a hardened YAML loader that keeps a source map.

``yaml.safe_load`` is necessary but not sufficient: it keeps the last of duplicate keys, reads
``1e-3`` as a string and ``no`` as false, recurses without bound and expands alias bombs. We
drive PyYAML's pure-Python scanner/parser/composer ourselves and build plain Python values from
the node tree with:

* YAML 1.2 core-schema scalars (``1e-3`` is a float; ``yes``/``no``/``on``/``off`` are strings);
* duplicate keys rejected, explicit tags rejected, merge keys rejected;
* caps on document size, nesting depth and alias expansion (checked while composing, so an
  alias bomb is refused without being expanded);
* a :class:`SourceMap` from every YAML path to the line and column of its key and value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor  # noqa: F401  (documents that we do not use it)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .errors import ERROR, Diagnostic, SpecError

MAX_BYTES = 1 << 20  # 1 MiB: a model spec is a page, not a data set
MAX_DEPTH = 64
MAX_NODES = 100_000  # nodes visited while building values, aliases counted each time they expand

_PLAIN = "archspec:plain"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_ALLOWED_TAGS = {_PLAIN, _STR, _SEQ, _MAP}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


def resolve_scalar(text: str):
    """Value of a plain (unquoted) scalar under the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT10.match(text):
        try:
            return int(text)
        except ValueError:  # longer than Python's int-parsing limit (4300 digits): out of any range
            return float(text)
    if _INT8.match(text):
        return int(text[2:], 8)
    if _INT16.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


@dataclass
class SourceMap:
    """Line/column (1-based) of every YAML path's value and, for mapping entries, its key."""

    file: str = ""
    values: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def locate(self, path, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the nearest ancestor that has one."""
        path = tuple(path)
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), (1, 1))


class _Resolver(BaseResolver):
    """Tags every plain scalar as 'plain' so we resolve it (YAML 1.2), and keeps explicit tags."""

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        if kind is SequenceNode:
            return _SEQ
        return _MAP


class _LimitError(Exception):
    def __init__(self, code: str, message: str, hint: str, node_or_mark):
        self.code, self.message, self.hint = code, message, hint
        self.mark = getattr(node_or_mark, "start_mark", node_or_mark)


class _Composer(Composer):
    """PyYAML's composer with a depth cap (its recursion would otherwise overflow)."""

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise _LimitError(
                    "E-YAML-DEPTH",
                    f"nesting deeper than {MAX_DEPTH} levels",
                    "flatten the structure; a spec never needs this depth",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(Reader, Scanner, Parser, _Composer, _Resolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        _Resolver.__init__(self)


def _pos(mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)


class _Builder:
    def __init__(self, smap: SourceMap):
        self.smap = smap
        self.count = 0
        self.diags: list[Diagnostic] = []

    def diag(self, code, path, message, hint, mark):
        line, col = _pos(mark)
        self.diags.append(
            Diagnostic(code, ERROR, tuple(path), message, hint, self.smap.file, line, col)
        )

    def build(self, node: Node, path: tuple):
        self.count += 1
        if self.count > MAX_NODES:
            raise _LimitError(
                "E-YAML-ALIAS",
                f"the document expands to more than {MAX_NODES} nodes (alias expansion)",
                "remove the anchors/aliases that repeat large structures",
                node,
            )
        self.smap.values.setdefault(path, _pos(node.start_mark))
        if node.tag not in _ALLOWED_TAGS:
            self.diag(
                "E-YAML-TAG",
                path,
                f"YAML tag '{node.tag}' is not allowed",
                "specs hold plain data only; remove the tag (quote the value if it must be a string)",
                node.start_mark,
            )
            return None
        if isinstance(node, ScalarNode):
            return resolve_scalar(node.value) if node.tag == _PLAIN else node.value
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        out: dict = {}
        seen: dict = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge" or (
                isinstance(knode, ScalarNode) and knode.tag == _PLAIN and knode.value == "<<"
            ):
                self.diag(
                    "E-YAML-MERGE",
                    path + ("<<",),
                    "merge keys ('<<') are not part of YAML 1.2 and are not supported",
                    "write the keys out, or use an alias for the whole value",
                    knode.start_mark,
                )
                continue
            if not isinstance(knode, ScalarNode):
                self.diag(
                    "E-YAML-KEY",
                    path,
                    "a mapping key must be a plain scalar, not a collection",
                    "use a string key",
                    knode.start_mark,
                )
                continue
            key = resolve_scalar(knode.value) if knode.tag == _PLAIN else knode.value
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                key = knode.value
            key = str(key)
            if key in seen:
                first = seen[key]
                self.diag(
                    "E-YAML-DUPKEY",
                    path + (key,),
                    f"duplicate key '{key}' (first defined at line {first[0]})",
                    "remove one of them; YAML loaders that keep the last one silently lose data",
                    knode.start_mark,
                )
                continue
            seen[key] = _pos(knode.start_mark)
            self.smap.keys[path + (key,)] = _pos(knode.start_mark)
            out[key] = self.build(vnode, path + (key,))
        return out


def _syntax_error(exc: yaml.MarkedYAMLError):
    """``(code, message, hint, mark)`` for a PyYAML syntax error, in a spec author's terms."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    context = exc.context or ""
    msg = f"{context}: {problem}" if context else problem
    if "expected a single document" in context + problem:
        return "E-YAML-DOC", msg, "a spec file holds one YAML document; remove the '---'", mark
    if ("<stream end>" in problem or "end of stream" in problem) and exc.context_mark is not None:
        # an unclosed bracket or quote: the end of the file is where it was noticed, not the mistake
        opened = context.replace("while parsing a ", "").replace("while scanning a ", "")
        return ("E-YAML-SYNTAX", f"{opened} opened here is never closed ({problem})",
                "close it (a missing ']', '}' or quote)", exc.context_mark)
    if "undefined alias" in problem:
        return "E-YAML-SYNTAX", msg, "define the anchor (`&name value`) before the alias `*name`, or write the value out", mark
    if "'\\t'" in problem:  # PyYAML writes the tab as '\\t'
        return "E-YAML-SYNTAX", msg, "indent with spaces; YAML does not allow tabs here", mark
    if "block" in context + problem or "mapping values are not allowed" in problem:
        return ("E-YAML-SYNTAX", msg, "check the indentation: the keys of one mapping start in the "
                "same column, and a `key: value` needs a space after the colon", mark)
    return "E-YAML-SYNTAX", msg, "fix the YAML syntax at this position", mark


def _offset_pos(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def load_text(text: str, file: str = "<spec>") -> tuple[object, SourceMap]:
    """Parse YAML text into plain values and a source map.

    Args:
        text: the YAML document.
        file: name used in diagnostics.

    Returns:
        ``(data, source_map)``.

    Raises:
        SpecError: with every loading problem found (syntax, duplicate keys, tags, caps).

    Example:
        >>> data, smap = load_text("a: 1e-3\\nb: no\\n")
        >>> data, smap.locate(("b",))
        ({'a': 0.001, 'b': 'no'}, (2, 4))
    """
    smap = SourceMap(file=file)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise SpecError(
            [Diagnostic("E-YAML-SIZE", ERROR, (), f"document is {size} bytes, over the cap of "
                        f"{MAX_BYTES}", "a spec is a page of YAML; move data out of it", file, 1, 1)]
        )
    builder = _Builder(smap)
    loader = None
    try:
        loader = _Loader(text)  # the reader rejects control characters here, before parsing
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Diagnostic("E-YAML-DOC", ERROR, (), "the document is empty",
                                        "start from a spec in specs/", file, 1, 1)])
        data = builder.build(node, ())
    except _LimitError as exc:
        line, col = _pos(exc.mark)
        raise SpecError(builder.diags + [Diagnostic(exc.code, ERROR, (), exc.message, exc.hint,
                                                    file, line, col)]) from None
    except yaml.MarkedYAMLError as exc:
        code, msg, hint, mark = _syntax_error(exc)
        line, col = _pos(mark)
        raise SpecError(builder.diags + [Diagnostic(code, ERROR, (), msg, hint, file, line, col)]) from None
    except ReaderError as exc:  # a character YAML does not allow (control characters)
        line, col = _offset_pos(text, exc.position)
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise SpecError(builder.diags + [Diagnostic(
            "E-YAML-SYNTAX", ERROR, (), f"character {what} is not allowed in YAML ({exc.reason})",
            "remove the control character; a spec is plain UTF-8 text", file, line, col)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "mark", None)
        line, col = _pos(mark) if mark is not None else (1, 1)
        raise SpecError(builder.diags + [Diagnostic("E-YAML-SYNTAX", ERROR, (), str(exc).splitlines()[0],
                                                    "fix the YAML syntax at this position", file, line, col)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.diags:
        raise SpecError(builder.diags)
    return data, smap


def load_file(path) -> tuple[object, SourceMap]:
    """Read and parse a spec file (see :func:`load_text`).

    Raises:
        SpecError: the file cannot be read, or does not load.
    """
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise SpecError([Diagnostic("E-FILE", ERROR, (), f"cannot read spec file '{name}': {reason}",
                                    "check the path (relative paths start from the current directory)",
                                    name, 0, 0)]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError([Diagnostic("E-YAML-SIZE", ERROR, (), f"file is over the cap of {MAX_BYTES} bytes",
                                    "a spec is a page of YAML; move data out of it", name, 1, 1)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([Diagnostic("E-YAML-SYNTAX", ERROR, (), f"not UTF-8 text: byte 0x{raw[exc.start]:02x} "
                                    f"cannot be decoded", "save the file as UTF-8", name, line, col)]) from None
    return load_text(text, name)


_SPEC_KEY = re.compile(rb"^archspec[ \t]*:", re.MULTILINE)


def is_spec_file(path) -> bool:
    """Whether a YAML file looks like an archspec spec (a top-level ``archspec:`` key).

    Used by ``validate --only-specs`` so a pre-commit hook on ``*.yaml`` skips other YAML files.
    A file that cannot be read counts as a spec, so that validate reports why.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_BYTES + 1)
    except OSError:
        return True
    return bool(_SPEC_KEY.search(head))
