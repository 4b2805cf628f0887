"""Turn pydantic validation errors into located diagnostics.

pydantic inserts the union tag into error locations (``encoders.x.mlp.layers``); we walk the raw
data alongside the location and drop the elements that are not in the data, so every path is a
real YAML path with a line and column.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from .errors import ERROR, Diagnostic, did_you_mean
from .load import SourceMap
from .registry import REGISTRIES

_SECTION_KIND = {"inputs": "input", "encoders": "encoder", "fusions": "fusion", "heads": "head"}

_TYPE_ERRORS = {"int_type", "float_type", "string_type", "bool_type", "dict_type", "list_type",
                "model_type", "model_attributes_type", "int_from_float", "bool_parsing", "int_parsing",
                "float_parsing", "none_required", "is_instance_of", "dataclass_type", "tuple_type"}


def _yaml_path(loc: tuple, data: Any) -> tuple[tuple, bool]:
    """Real YAML path of a pydantic location; second item: whether the last element exists."""
    out, cur = [], data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif i == len(loc) - 1:
            out.append(part)
            return tuple(out), False
        # else: a union tag or validator name inserted by pydantic: skip it
    return tuple(out), True


def _unwrap(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _model_at(root: type, path: tuple, data: Any):
    """The pydantic model class that validates the mapping at ``path`` (best effort)."""
    tp, cur = root, data
    for part in path:
        tp = _unwrap(tp)
        tp = _pick(tp, cur)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
        cur = cur.get(part) if isinstance(cur, dict) else (cur[part] if isinstance(cur, list) and isinstance(part, int) and part < len(cur) else None)
    tp = _pick(_unwrap(tp), cur)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _pick(tp, cur):
    """Choose the member of a union that the data selects (by `type`, or the only model)."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        members = [_unwrap(a) for a in typing.get_args(tp)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if isinstance(cur, dict) and "type" in cur:
            for m in models:
                f = m.model_fields.get("type")
                if f is not None and cur["type"] in typing.get_args(f.annotation):
                    return m
        if len(models) == 1:
            return models[0]
        for m in members:
            if typing.get_origin(m) in (dict, list):
                return m
    return tp


def _keys(model) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()] if model else []


def _known_types(path: tuple) -> tuple[str, list[str]]:
    if len(path) == 2 and path[0] in _SECTION_KIND:
        kind = _SECTION_KIND[path[0]]
    elif path and path[-1] == "loss":
        kind = "loss"
    elif path and path[-1] in ("optimizer", "schedule", "tokenizer"):
        kind = path[-1]
    else:
        return "component", []
    return kind, REGISTRIES[kind].names()


def to_diagnostics(exc, data: Any, smap: SourceMap, root: type, prefix: tuple = ()) -> list[Diagnostic]:
    """Map a ``pydantic.ValidationError`` to diagnostics, one per problem.

    ``prefix`` is the YAML path of the value that was validated (when validating one node).
    """
    out = []
    for err in exc.errors(include_url=False):
        etype = err["type"]
        path, exists = _yaml_path(tuple(prefix) + tuple(err["loc"]), data)
        ctx = err.get("ctx") or {}
        inp = err.get("input")
        key_pos = False
        if etype == "extra_forbidden":
            key_pos = True
            model = _model_at(root, path[:-1], data)
            allowed = _keys(model)
            near = did_you_mean(str(path[-1]), allowed)
            code, msg = "E-SCHEMA-UNKNOWN", f"unknown key '{path[-1]}'"
            hint = near or (f"allowed keys: {', '.join(allowed)}" if allowed else "remove it")
            if path[-1] == "trust_remote_code":
                hint = "archspec never runs code from a model repository; remove it"
        elif etype == "missing":
            code, msg = "E-SCHEMA-MISSING", f"missing required key '{path[-1]}'"
            hint = f"add `{path[-1]}:`"
            path_for_pos = path[:-1]
            line, col = smap.locate(path_for_pos)
            out.append(Diagnostic(code, ERROR, path, msg, hint, smap.file, line, col))
            continue
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
            hint = f"add `type:` — one of {', '.join(known)}"
            path = path + ("type",)
            line, col = smap.locate(path[:-1])
            out.append(Diagnostic(code, ERROR, path, msg, hint, smap.file, line, col))
            continue
        elif etype == "literal_error" and path == ("archspec",):
            code, msg = "E-VERSION", f"unsupported spec format version {inp!r}"
            hint = "this archspec reads `archspec: 1`"
        elif etype in _TYPE_ERRORS:
            code = "E-SCHEMA-TYPE"
            msg = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(inp)}"
            hint = _type_hint(etype, inp)
        else:
            code = "E-SCHEMA-VALUE"
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            else:
                msg = f"{msg[0].lower()}{msg[1:]}, got {_show(inp)}"
            hint = "see docs/spec.md for this field"
            if etype == "literal_error":
                expected = str(ctx.get("expected", ""))
                options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
                near = did_you_mean(str(inp), options)
                hint = near or f"one of {expected}"
        line, col = smap.locate(path, key=key_pos)
        out.append(Diagnostic(code, ERROR, path, msg, hint, smap.file, line, col))
    return out


def _show(v) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _type_hint(etype: str, inp) -> str:
    if etype in ("int_type", "int_from_float"):
        if isinstance(inp, str):
            return "write the number without quotes"
        return "write a whole number (no decimal point, not true/false)"
    if etype == "float_type" and isinstance(inp, str):
        return "write the number without quotes"
    if etype == "bool_type":
        return "write true or false (YAML 1.2: yes/no/on/off are strings)"
    if etype in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping (key: value lines)"
    if etype == "list_type":
        return "write a list, e.g. [a, b]"
    if etype == "string_type":
        return "quote the value if it must be text"
    return "see docs/spec.md for this field"
