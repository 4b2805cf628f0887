"""Turn pydantic validation errors into located diagnostics.

pydantic inserts union tags into error locations (``encoders.x.mlp.layers``,
``heads.h.classes.constrained-int``); we walk the raw data alongside the location and drop the
elements that are not in the data, so every path is a real YAML path with a line and column.
A value that fails every member of a union (``classes: yes``) gets one diagnostic, not one per
member. Messages are ours, in the spec's terms (``true``/``null``, not ``True``/``None``).

A model validator may append its own hint to its message after `` — ``::

    raise ValueError("classes listed twice: a — list each class once")
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from pydantic import BaseModel

from .errors import ERROR, Diagnostic, did_you_mean
from .load import SourceMap
from .registry import REGISTRIES, SECTION_KINDS

# pydantic error type → what was expected, in a spec author's words
_EXPECTED = {
    "int_type": "a whole number", "int_from_float": "a whole number", "int_parsing": "a whole number",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "text",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list",
    "none_required": "null",
    "is_instance_of": "a value of another type",
}
_TYPE_ERRORS = set(_EXPECTED)
_EXAMPLE = {"a whole number": "3", "a number": "0.5", "text": "name", "true or false": "true",
            "a mapping": "{key: value}", "a list": "[a, b]", "null": "null"}
_NAME_PATTERNS = {r"^[A-Za-z0-9_.-]+$": "use only letters, digits, '_', '.' and '-'"}
_NO_HINT = "see `archspec schema` for what this field takes"


def _yaml_path(loc: tuple, data: Any, missing: bool) -> tuple[tuple, bool, bool]:
    """Real YAML path of a pydantic location.

    Returns:
        ``(path, at_key, skipped)``: ``at_key`` when the error is about a mapping key itself
        (``[key]`` locations), ``skipped`` when a union tag was dropped from the location.
    """
    out, cur, skipped = [], data, False
    for i, part in enumerate(loc):
        if part == "[key]":
            return tuple(out), True, skipped
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif i == len(loc) - 1 and missing:
            out.append(part)  # the missing key itself
        else:
            skipped = True  # a union tag or validator name inserted by pydantic
    return tuple(out), False, skipped


def _unwrap(tp):
    while typing.get_origin(tp) is typing.Annotated:
        marker = _registry_union(typing.get_args(tp)[1:])
        tp = marker.union() if marker is not None else typing.get_args(tp)[0]
    return tp


def _registry_union(metadata):
    from .spec.base import RegistryUnion

    return next((m for m in metadata if isinstance(m, RegistryUnion)), None)


def _field_type(field):
    """A field's type, with a registry union (a head's `loss`, ...) expanded to its members."""
    marker = _registry_union(field.metadata)
    return marker.union() if marker is not None else field.annotation


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp, cur) -> list:
    """The types that may validate ``cur``: the union member its ``type`` selects, else all."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return [tp]
    members = [_unwrap(a) for a in typing.get_args(tp)]
    if isinstance(cur, dict) and "type" in cur:
        chosen = [m for m in members if _is_model(m) and "type" in m.model_fields
                  and cur["type"] in typing.get_args(m.model_fields["type"].annotation)]
        if chosen:
            return chosen
    return members


def _models_at(tp, path: tuple, cur) -> list[type]:
    """The pydantic models that may validate the mapping at ``path`` (best effort)."""
    members = _members(tp, cur)
    if not path:
        return [m for m in members if _is_model(m)]
    part, rest = path[0], path[1:]
    if isinstance(cur, dict):
        nxt = cur.get(part)
    elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
        nxt = cur[part]
    else:
        nxt = None
    out = []
    for m in members:
        if _is_model(m):
            field = next((f for n, f in m.model_fields.items() if (f.alias or n) == part), None)
            if field is not None:
                out += _models_at(_field_type(field), rest, nxt)
        elif typing.get_origin(m) is dict:
            out += _models_at(typing.get_args(m)[1], rest, nxt)
        elif typing.get_origin(m) is list and isinstance(part, int):
            out += _models_at(typing.get_args(m)[0], rest, nxt)
    return out


def _keys(models) -> list[str]:
    keys: list[str] = []
    for m in models:
        for n, f in m.model_fields.items():
            if (f.alias or n) not in keys:
                keys.append(f.alias or n)
    return keys


def _known_types(path: tuple) -> tuple[str, list[str]]:
    if len(path) == 2 and path[0] in SECTION_KINDS:
        kind = SECTION_KINDS[path[0]]
    elif path and path[-1] == "loss":
        kind = "loss"
    elif path and path[-1] in ("optimizer", "schedule", "tokenizer"):
        kind = path[-1]
    else:
        return "component", []
    return kind, REGISTRIES[kind].names()


def _prune(items: list[dict]) -> list[dict]:
    """Keep, of the errors a union produced, the ones about the member the value was meant for.

    ``classes: [a, 3]`` fails both ``int`` (not an int) and ``list[str]`` (item 1 not text): the
    deeper error is the useful one. ``pos_weight: -1`` fails ``float > 0`` and ``list``: the value
    error (right type, wrong value) is the useful one.
    """
    union = [e for e in items if e["skipped"] and not e["at_key"]]
    drop = set()
    for e in union:
        if e["type"] not in _TYPE_ERRORS:
            continue
        deeper = any(o is not e and len(o["path"]) > len(e["path"]) and o["path"][:len(e["path"])] == e["path"]
                     for o in union)
        typed = any(o is not e and o["path"] == e["path"] and o["type"] not in _TYPE_ERRORS for o in union)
        if deeper or typed:
            drop.add(id(e))
    return [e for e in items if id(e) not in drop]


def to_diagnostics(exc, data: Any, smap: SourceMap, root: type, prefix: tuple = ()) -> list[Diagnostic]:
    """Map a ``pydantic.ValidationError`` to diagnostics, one per problem.

    ``prefix`` is the YAML path of the value that was validated (when validating one node).
    """
    items = []
    for err in exc.errors(include_url=False):
        loc = tuple(prefix) + tuple(err["loc"])
        path, at_key, skipped = _yaml_path(loc, data, err["type"] == "missing")
        items.append({**err, "path": path, "at_key": at_key, "skipped": skipped})
    items = _prune(items)

    out: list[Diagnostic] = []
    merged: dict = {}  # path → index in out of a union type error, to merge its siblings into
    for err in items:
        path = err["path"]
        if err["skipped"] and err["type"] in _TYPE_ERRORS and not err["at_key"]:
            if path in merged:
                i, expected = merged[path]
                expected.append(_EXPECTED[err["type"]])
                d = out[i]
                msg = f"expected {_or(expected)}, got {_show(err.get('input'))}"
                out[i] = Diagnostic(d.code, d.severity, d.path, msg, _type_hint(err["type"], err.get("input"),
                                    expected), d.file, d.line, d.col)
                continue
            merged[path] = (len(out), [_EXPECTED[err["type"]]])
        out.append(_one(err, data, smap, root))
    return _drop_missing_explained_by_typos(out)


def _drop_missing_explained_by_typos(diags: list[Diagnostic]) -> list[Diagnostic]:
    """``fro: x`` is one mistake: report the unknown key (did you mean 'from'?), not also 'from' missing."""
    typo = {d.path[:-1] + (d.hint[len("did you mean '"):-2],) for d in diags
            if d.code == "E-SCHEMA-UNKNOWN" and d.hint.startswith("did you mean '")}
    return [d for d in diags if not (d.code == "E-SCHEMA-MISSING" and d.path in typo)]


def _or(words: list[str]) -> str:
    words = list(dict.fromkeys(words))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _one(err: dict, data, smap: SourceMap, root) -> Diagnostic:
    etype, path = err["type"], err["path"]
    ctx = err.get("ctx") or {}
    inp = err.get("input")
    key_pos = err["at_key"]
    if etype == "extra_forbidden":
        key_pos = True
        allowed = _keys(_models_at(root, path[:-1], data))
        near = did_you_mean(str(path[-1]), allowed)
        code, msg = "E-SCHEMA-UNKNOWN", f"unknown key '{path[-1]}'"
        hint = near or (f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it")
        if path[-1] == "trust_remote_code":
            hint = "archspec never runs code from a model repository; remove it"
    elif etype == "missing":
        code, msg = "E-SCHEMA-MISSING", f"missing required key '{path[-1]}'"
        hint = f"add `{path[-1]}:`"
        line, col = smap.locate(path[:-1], key=True)
        return Diagnostic(code, ERROR, path, msg, hint, smap.file, line, col)
    elif etype == "union_tag_invalid":
        kind, known = _known_types(path)
        tag = ctx.get("tag")
        near = did_you_mean(str(tag), known)
        code = "E-UNKNOWN-TYPE"
        msg = f"unknown {kind} type '{tag}'"
        hint = ((near + " ") if near else "") + f"known: {', '.join(known)}"
        path = path + ("type",)
    elif etype == "union_tag_not_found":
        kind, known = _known_types(path)
        code, msg = "E-SCHEMA-MISSING", f"missing required key 'type' of this {kind}"
        hint = f"add `type:` (one of {', '.join(known)})"
        line, col = smap.locate(path, key=True)
        return Diagnostic(code, ERROR, path + ("type",), msg, hint, smap.file, line, col)
    elif etype == "literal_error" and path == ("archspec",):
        code, msg = "E-VERSION", f"unsupported spec format version {_show(inp)}"
        if str(inp).strip() == "1":
            hint = "write `archspec: 1` without quotes"
        elif isinstance(inp, int) and not isinstance(inp, bool) and inp > 1:
            hint = "this archspec reads `archspec: 1`; upgrade archspec to read newer specs"
        else:
            hint = "write `archspec: 1`"
    elif etype in _TYPE_ERRORS:
        code = "E-SCHEMA-TYPE"
        msg = f"expected {_EXPECTED[etype]}, got {_show(inp)}"
        hint = _type_hint(etype, inp, [_EXPECTED[etype]])
    else:
        code = "E-SCHEMA-VALUE"
        msg, hint = _value_message(etype, err, ctx, inp, path)
    line, col = smap.locate(path, key=key_pos)
    return Diagnostic(code, ERROR, path, msg, hint, smap.file, line, col)


def _value_message(etype: str, err: dict, ctx: dict, inp, path) -> tuple[str, str]:
    """``(message, hint)`` for a value of the right type that is out of bounds or not allowed."""
    got = _show(inp)
    if etype == "greater_than":
        return f"must be greater than {_num(ctx['gt'])}, got {got}", f"use a value above {_num(ctx['gt'])}"
    if etype == "greater_than_equal":
        return f"must be at least {_num(ctx['ge'])}, got {got}", f"use a value of {_num(ctx['ge'])} or more"
    if etype == "less_than":
        return f"must be less than {_num(ctx['lt'])}, got {got}", f"use a value below {_num(ctx['lt'])}"
    if etype == "less_than_equal":
        return f"must be at most {_num(ctx['le'])}, got {got}", f"use a value of {_num(ctx['le'])} or less"
    if etype == "finite_number":
        return f"must be a finite number, got {got}", "NaN and infinity are not allowed here"
    if etype == "too_short":
        n, have = ctx.get("min_length"), ctx.get("actual_length")
        return f"needs at least {n} item{'s' if n != 1 else ''}, got {have}", f"list at least {n} item{'s' if n != 1 else ''}"
    if etype == "too_long":
        n, have = ctx.get("max_length"), ctx.get("actual_length")
        return f"takes at most {n} item{'s' if n != 1 else ''}, got {have}", f"list at most {n} item{'s' if n != 1 else ''}"
    if etype == "string_too_short":
        return "must not be empty", "write a value, or remove the key to use the default"
    if etype == "string_too_long":
        n = ctx.get("max_length")
        return f"is {len(str(inp))} characters long, over the limit of {n}", f"shorten it to {n} characters"
    if etype == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"{got} does not match the pattern {pattern}", _NAME_PATTERNS.get(pattern, f"match {pattern}")
    if etype == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        near = did_you_mean(str(inp), options)
        return f"expected {expected}, got {got}", near or f"use one of {expected}"
    if etype in ("value_error", "assertion_error"):
        text = str(ctx.get("error", err["msg"]))
        msg, _, hint = text.partition(" — ")
        return msg, hint or _NO_HINT
    msg = err["msg"]
    return f"{msg[0].lower()}{msg[1:]}, got {got}", _NO_HINT


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _show(v) -> str:
    """A value as the spec author wrote it (YAML spelling)."""
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _type_hint(etype: str, inp, expected: list[str]) -> str:
    if isinstance(inp, str) and _looks_numeric(inp) and etype in ("int_type", "float_type", "int_parsing",
                                                                  "float_parsing"):
        return "write the number without quotes"
    if etype in ("int_type", "int_from_float") and len(expected) == 1:
        return "write a whole number (no decimal point, not true/false)"
    if etype == "bool_type" and len(expected) == 1:
        return "write true or false (YAML 1.2: yes/no/on/off are text)"
    if etype == "string_type" and len(expected) == 1:
        return "quote the value if it must be text"
    if len(expected) > 1:
        return "write e.g. " + " or ".join(f"`{_EXAMPLE.get(e, e)}`" for e in dict.fromkeys(expected))
    if expected[0] == "a mapping":
        return "write a mapping (`key: value` lines, or `{key: value}`)"
    if expected[0] == "a list":
        return "write a list, e.g. `[a, b]`"
    return f"write {expected[0]}"
