"""Settings dataclasses as the single source of flags: field docstrings, and typer options built from them.

Every config dataclass in this project documents a field with the string
literal under it (TRL's style). `field_docs` reads those strings back from
the class source (and its bases'), so `--help` texts and run-file error
messages never repeat a default or a description by hand. `command_from`
turns a set of dataclasses into one typer command whose options default to
None: only flags the user actually gave are passed on, so the dataclass
defaults stay the only defaults, and `--help` shows them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import typer

_FLAG_TYPES = (str, int, float, bool)


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it, for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (a frozen build): fall back to no text
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for field, doc in zip(body, body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                docs[field.target.id] = " ".join(doc.value.value.split())
    return docs


def _flag_type(annotation: Any) -> Any:
    """The scalar type a flag parses, or `dict` (a JSON object on the command line)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    base = typing.get_origin(annotation) or annotation
    return base if base in _FLAG_TYPES else dict


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return "none" if field.default is None else str(field.default)
    return json.dumps(field.default_factory()) if field.default_factory is not dataclasses.MISSING else ""


def command_from(
    sections: Sequence[type],
    body: Callable[[dict[str, Any]], None],
    *,
    prefix: Callable[[str], str] = lambda _name: "",
    skip: Sequence[str] = (),
    extra: Sequence[inspect.Parameter] = (),
    doc: str = "",
) -> Callable[..., None]:
    """A typer command whose options are the fields of the dataclasses in `sections`.

    A field that several sections share becomes one option (first section's
    text, after `prefix(field name)`). The command calls `body(values)` with only the options the user
    gave; the `extra` parameters (e.g. `--db`) are passed through by name.
    A dict field takes a JSON object.
    """
    params: list[inspect.Parameter] = []
    kinds: dict[str, Any] = {}
    for cls in sections:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for field in dataclasses.fields(cls):
            if field.name in kinds or field.name in skip:
                continue
            kind = _flag_type(hints[field.name])
            kinds[field.name] = kind
            text = f"{prefix(field.name)}{docs.get(field.name, '')}"
            option = typer.Option(
                None, f"--{field.name.replace('_', '-')}", help=text, show_default=_default_text(field)
            )
            annotation = str if kind is dict else kind
            if kind is bool:
                option = typer.Option(
                    None, f"--{field.name.replace('_', '-')}/--no-{field.name.replace('_', '-')}", help=text,
                    show_default=_default_text(field),
                )  # fmt: skip
            params.append(
                inspect.Parameter(
                    field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation | None
                )  # fmt: skip
            )
    params += list(extra)
    extra_names = {p.name for p in extra}

    def command(**given: Any) -> None:
        values = {}
        for name, value in given.items():
            if name in extra_names or value is None:
                continue
            if kinds[name] is dict:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise typer.BadParameter(
                        f"--{name.replace('_', '-')} takes a JSON object: {exc}"
                    ) from None
                if not isinstance(value, dict):
                    raise typer.BadParameter(f"--{name.replace('_', '-')} takes a JSON object, got {value!r}")
            values[name] = value
        body({**values, **{name: given[name] for name in extra_names}})

    command.__signature__ = inspect.Signature(params)  # typer reads the signature
    command.__doc__ = doc
    return command
