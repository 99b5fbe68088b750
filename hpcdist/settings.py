"""Settings as dataclass fields: the flag and the check of each come from its annotation.

@dataclass
class MyConfig:
    epochs: int = setting(40, "passes over the data", ge=1)
    mode: str = setting("a", "how", choices=("a", "b"))

add_fields(parser_group, MyConfig)   # --epochs N, --mode {a,b}
check_fields(cfg)                     # ValueError: "epochs must be an integer >= 1, got 3.7"
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import operator
import types
import typing
from dataclasses import field

_BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt)}
_BOUNDS.update({"le": ("<=", operator.le), "lt": ("<", operator.lt)})
_KINDS = {bool: ("true or false", "booleans"), int: ("an integer", "integers")}
_KINDS.update({float: ("a finite number", "finite numbers"), str: ("a string", "strings")})
_META = ("flag", "metavar", "choices", "unset", "check", "min_items")
_BAD = object()  # a value that is not of the setting's type


def setting(default, help: str, **meta) -> typing.Any:
    """A dataclass field whose metadata makes its command-line flag and its check.

    help: the flag's help (the default is appended). meta: flag (when not --field-name; a
    bool's flag sets `not default`: --name, or --no-name for True), metavar, choices (a
    tuple, or a function returning one), unset (what None means), bounds ge/gt/le/lt (per
    item for a list), min_items, check (fn(value, name) -> value, run after the rest).
    """
    extra = sorted(set(meta) - {*_BOUNDS, *_META})
    if extra:
        raise TypeError(f"setting() got unknown keywords {extra}")
    meta["help"] = help
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, default), metadata=meta)
    return field(default=default, metadata=meta)


def _unpack(hint) -> tuple[typing.Any, bool]:
    """(the type, whether None is allowed) of an annotation such as `int | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(hint))
    return hint, False


def _typed(kind, value):
    """`value` as a `kind` (an int is a float, "1,2" a list[int]; no other text); else _BAD."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, str):
            value = [_from_text(item, p) for p in value.replace(" ", "").split(",") if p]
        if not isinstance(value, (list, tuple)):
            return _BAD
        items = [_typed(item, v) for v in value]
        return _BAD if any(v is _BAD for v in items) else items
    if kind is bool or isinstance(value, bool):
        return value if kind is bool and isinstance(value, bool) else _BAD
    if kind is int:
        return int(value) if isinstance(value, numbers.Integral) else _BAD
    if kind is float:
        real = isinstance(value, numbers.Real) and math.isfinite(value)
        return float(value) if real else _BAD
    return value if isinstance(value, kind) else _BAD


def _from_text(kind, text: str):
    """A flag's text as `kind` where it reads as one; else the text, for the check to name."""
    try:
        is_list = typing.get_origin(kind) is list
        value = _typed(kind, text) if is_list else {int: int, float: float}.get(kind, str)(text)
    except ValueError:
        return text
    return text if value is _BAD else value


def _choices(meta) -> tuple | None:
    names = meta.get("choices")
    return tuple(names() if callable(names) else names) if names else None


def _fits(meta, value) -> bool:
    choices = _choices(meta)
    if choices is not None and value not in choices:
        return False
    items = value if isinstance(value, list) else [value]
    if len(items) < meta.get("min_items", 0):
        return False
    return all(op(v, meta[k]) for v in items for k, (_, op) in _BOUNDS.items() if k in meta)


def _accepts(f: dataclasses.Field, kind, optional: bool) -> str:
    """What setting `f` accepts, in words: 'an integer >= 1', 'one of [...]'."""
    meta = f.metadata
    if _choices(meta) is not None:
        return f"one of {list(_choices(meta))}" + (", or unset" if optional else "")
    span = " and".join(f" {sign} {meta[k]:g}" for k, (sign, _) in _BOUNDS.items() if k in meta)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        example = _default(f)
        what = "a non-empty list" if meta.get("min_items") else "a list"
        what += f" of {_KINDS[item][1] if item in _KINDS else item}{span}"
        span = f", such as {example} or {','.join(map(str, example))!r}"
    else:
        what = _KINDS[kind][0] if kind in _KINDS else f"a {getattr(kind, '__name__', kind)}"
    return what + span + (", or unset" if optional else "")


def _checked(f: dataclasses.Field, hint, value):
    """`value` checked (and normalised) for field `f`, or ValueError naming it."""
    kind, optional = _unpack(hint)
    if value is None and optional:
        return None
    out = _typed(kind, value)
    if out is _BAD or not _fits(f.metadata, out):
        raise ValueError(f"{f.name} must be {_accepts(f, kind, optional)}, got {value!r}")
    check = f.metadata.get("check")
    return check(out, f.name) if check else out


def check_fields(obj) -> None:
    """Check every field of dataclass `obj` in place; ValueError names the first bad one."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _checked(f, hints[f.name], getattr(obj, f.name)))


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _help(f: dataclasses.Field, kind) -> str:
    value = _default(f)
    shown = f.metadata.get("unset") or "unset" if value is None else value
    if kind is bool or isinstance(value, list):
        shown = f"{f.name} = {str(value).lower()}" if kind is bool else ",".join(map(str, value))
    return f"{f.metadata.get('help', '')} (default: {shown})".strip().replace("%", "%%")


def _flag(f: dataclasses.Field, hint) -> tuple[str, dict]:
    """The flag of field `f` and its add_argument keywords."""
    kind, _ = _unpack(hint)
    meta, dashed = f.metadata, f.name.replace("_", "-")
    kwargs = dict(dest=f.name, default=None, help=_help(f, kind))
    if kind is bool:
        on = not _default(f)
        kwargs.update(action="store_const", const=on)
        return meta.get("flag") or f"--{'' if on else 'no-'}{dashed}", kwargs
    choices = _choices(meta)
    metavar = "{" + ",".join(choices) + "}" if choices else meta.get("metavar")
    kwargs.update(type=functools.partial(_from_text, kind), metavar=metavar)
    return meta.get("flag") or f"--{dashed}", kwargs


def add_fields(group, cls: type) -> None:
    """One flag per field of dataclass `cls`, made from its annotation and setting() metadata.

    Defaults are None, so that a value not given leaves the TOML's or the field's
    default; a bad value is kept as text for check_fields to name (one message).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag, kwargs = _flag(f, hints[f.name])
        group.add_argument(flag, **kwargs)


def markdown_table(cls: type) -> str:
    """A Markdown table of every field of `cls`: flag, TOML key, default, what it accepts, help
    (docs/training.md holds the TrainConfig one; tests/test_config.py keeps it true)."""
    hints = typing.get_type_hints(cls)
    rows = ["| flag | TOML key | default | accepts | what |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        flag, _ = _flag(f, hints[f.name])
        kind, optional = _unpack(hints[f.name])
        value = _default(f)
        if value is None:
            shown = f.metadata.get("unset") or "unset"
        elif isinstance(value, list):
            shown = f"`{','.join(map(str, value))}`"
        else:
            shown = f"`{str(value).lower() if kind is bool else value}`"
        accepts = "a flag" if kind is bool else _accepts(f, kind, optional)
        cells = [f"`{flag}`", f"`{f.name}`", shown, accepts, f.metadata.get("help", "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
