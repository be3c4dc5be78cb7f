"""The one codec for every value that crosses a process or a disk: cattrs over cbor2.

Values are frozen attrs classes. Modules that define carried types register them here at import
(``register``, ``register_positional``, ``register_union``); the registry lets one round-trip test
cover every carried type. Tagged unions carry their member's class name under ``TAG``. Never
pickle: decoding a stranger's bytes must only ever build our own plain values.

``decode`` turns every failure (bad CBOR, wrong shape, failed validator, containers nested deeper
than ``limits.NESTING_DEPTH_MAX``, which cbor2 counts as it reads) into ``DecodeError``;
the caller turns that into ``RemoteProtocolError`` (a peer) or ``CorruptionError`` (a file).
"""

from __future__ import annotations

import enum
import io
import operator
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

import attrs
import cbor2
from cattrs.preconf.cbor2 import make_converter
from cattrs.strategies import configure_tagged_union

from raftq import limits
from raftq.errors import DecodeError

T = TypeVar("T")
C = TypeVar("C", bound=type)

TAG = "_t"
"""The key that names a tagged union's member; underscored so it never clashes with a field."""

converter = make_converter()

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""Every integer carried fits in 64 bits (signed or unsigned). A CBOR bignum from a stranger
is refused rather than carried into the log, the state machine or a comparison."""


def _strict(kind: type) -> Callable[[Any, Any], Any]:
    """A structure hook that takes only ``kind`` itself. cattrs' defaults convert (``bytes(n)``
    of an integer allocates n zero bytes; ``int()`` of a CBOR decimal fraction 1e999999999
    never returns), which a decoder of hostile bytes must never do."""

    def structure_strict(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise DecodeError(f"expected {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise DecodeError("integer outside 64 bits")
        return value

    return structure_strict


def _supertype(cls: Any) -> Any:
    while hasattr(cls, "__supertype__"):  # NewType
        cls = cls.__supertype__
    return cls


def _structure_enum(value: Any, cls: Any) -> Any:
    if type(value) is not int and type(value) is not str:
        raise DecodeError(f"expected a {cls.__name__}, got {type(value).__name__}")
    member = cls._value2member_map_.get(value)  # a dict lookup; ``cls(value)`` is Python code
    return member if member is not None else cls(value)


def _is_new_type_of(kind: type) -> Callable[[Any], bool]:
    return lambda cls: cls is not kind and _supertype(cls) is kind


for _kind in (int, str, bytes, bool):
    converter.register_structure_hook(_kind, _strict(_kind))
    converter.register_structure_hook_func(_is_new_type_of(_kind), _strict(_kind))
for _enum in (enum.Enum, enum.IntEnum, enum.StrEnum):  # before int and str in their MRO
    converter.register_structure_hook(_enum, _structure_enum)


def _is_array(cls: Any) -> bool:
    """``tuple[X, ...]`` or ``list[X]``: a CBOR array of X."""
    origin = typing.get_origin(cls)
    arguments = typing.get_args(cls)
    if origin is list:
        return len(arguments) == 1
    return origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis


def _structure_array(cls: Any) -> Callable[[Any, Any], Any]:
    """Only an array becomes a sequence: cattrs' default iterates whatever it is given, so a
    string sent where a list of ids belongs became a tuple of its characters (``depends_on``
    "abc" naming parents a, b and c)."""
    element = typing.get_args(cls)[0]
    element_hook = converter.get_structure_hook(element)
    make = tuple if typing.get_origin(cls) is tuple else list

    def structure_array(value: Any, _: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise DecodeError(f"expected an array, got {type(value).__name__}")
        return make([element_hook(item, element) for item in value])

    return structure_array


converter.register_structure_hook_factory(_is_array, _structure_array)

_carried: list[Any] = []

_fast_encoders: dict[type, Callable[[Any], bytes]] = {}
"""Positional classes of primitive fields encode straight from a tuple of their fields."""

_PRIMITIVES = (int, str, bytes, bool)


def _is_primitive(field_type: Any) -> bool:
    while hasattr(field_type, "__supertype__"):  # NewType
        field_type = field_type.__supertype__
    return isinstance(field_type, type) and issubclass(field_type, _PRIMITIVES)


def carried_types() -> tuple[Any, ...]:
    """Every type registered so far (classes and unions), in registration order."""
    return tuple(_carried)


def register(cls: C) -> C:
    """Register an attrs class carried as a CBOR map of its fields. Usable as a decorator."""
    _require_attrs_class(cls)
    _carried.append(cls)
    return cls


def register_positional(cls: C) -> C:
    """Register an attrs class carried as a CBOR array of its fields, in declaration order.

    For values on the hot path (log entries): no field names on the wire or disk, and a
    hand-rolled unstructure that is a single list display for primitive fields.

    Fields may be added at the end of a class later, declared with ``added(default)``: an
    array that stops before them (written by an older raftq, or left off because they hold
    their defaults) decodes with the defaults, and encoding leaves off a tail of added fields
    at their defaults, so a value that does not use a new field costs nothing for it on the
    wire or on disk.
    """
    _require_attrs_class(cls)
    fields = attrs.fields(attrs.resolve_types(cls))
    names = tuple(field.name for field in fields)
    unstructure_hooks = [converter.get_unstructure_hook(field.type) for field in fields]
    structure_hooks = [converter.get_structure_hook(field.type) for field in fields]
    field_types = [field.type for field in fields]
    required = len(fields)
    while required and fields[required - 1].metadata.get(_ADDED):
        required -= 1
    assert not any(field.metadata.get(_ADDED) for field in fields[:required]), (
        f"{cls.__name__}: fields declared with added() must come after all others"
    )
    defaults = [_plain_default(field) for field in fields[required:]]
    """The unstructured default of each optional field at the end, in order."""
    if all(_is_primitive(field_type) for field_type in field_types):
        getter = _getter(names)
        if defaults:
            _fast_encoders[cls] = lambda value: cbor2.dumps(
                _without_default_tail(list(getter(value)), required, defaults)
            )
        else:
            _fast_encoders[cls] = lambda value: cbor2.dumps(getter(value))

    field_values = _getter(names)
    converted = [
        (position, hook)
        for position, (hook, field_type) in enumerate(
            zip(unstructure_hooks, field_types, strict=True)
        )
        if not _is_primitive(field_type)
    ]
    """The fields whose plain form is not the value itself (primitives' hooks are identity)."""

    def unstructure(value: Any) -> list[Any]:
        items = list(field_values(value))
        for position, hook in converted:
            items[position] = hook(items[position])
        return _without_default_tail(items, required, defaults) if defaults else items

    def structure(raw: Any, _: Any) -> Any:
        if not isinstance(raw, list) or not required <= len(raw) <= len(names):
            what = f"{len(names)}" if required == len(names) else f"{required} to {len(names)}"
            raise DecodeError(f"{cls.__name__} needs an array of {what} items")
        fast = _accepts.get(cls)
        if fast is not None:
            accept, build = fast
            accepted = accept(raw + defaults[len(raw) - required :] if defaults else raw)
            if accepted is not None:
                assert len(accepted) == len(names), (cls, accepted)
                return build(accepted)
        return cls(
            **{
                name: hook(item, field_type)
                for name, hook, item, field_type in zip(
                    names, structure_hooks, raw, field_types, strict=False
                )
            }
        )

    converter.register_unstructure_hook(cls, unstructure)
    converter.register_structure_hook(cls, structure)
    _carried.append(cls)
    return cls


Accept = Callable[[list[Any]], tuple[Any, ...] | None]
"""A positional class's fast decode check (``accept_valid``): given every field's plain value
in order (a missing added field filled with its plain default), the field values the class's
own ``__init__`` would accept unchanged and store, or None to leave the value to cattrs and the
validators (which then build it or say precisely what is wrong)."""

_accepts: dict[type, tuple[Accept, Callable[[tuple[Any, ...]], Any]]] = {}
"""Each class's fast check and the builder of what it vouched for."""


def accept_valid(cls: type, accept: Accept) -> None:
    """Decode ``cls`` (registered positional) through ``accept`` first: for the values on the
    hot path (every job of every ``Enqueue``, decoded by the leader from its client and by
    every follower from the log), one function of plain comparisons instead of a cattrs hook
    and an attrs validator per field, about a fifth of the cost. ``accept`` must accept only
    values that the class's validators accept (tests/test_codec_accept.py checks it against
    them); anything it does not vouch for takes the usual way."""
    assert cls in _carried, f"{cls!r} is not registered"
    assert not hasattr(cls, "__attrs_post_init__"), f"{cls!r} checks more than its fields"
    _accepts[cls] = (accept, _builder(cls, tuple(field.name for field in attrs.fields(cls))))


def _builder(cls: type, names: tuple[str, ...]) -> Callable[[tuple[Any, ...]], Any]:
    """Builds a frozen ``cls`` from field values that ``accept`` vouched for, without running
    its validators again (the attrs ``__init__`` would only set the same attributes)."""
    # One straight-line function per class, as attrs writes its own __init__, setting each
    # slot through its descriptor: a loop, or object.__setattr__ per field, cost as much as
    # the checks it saves.
    assert "__slots__" in cls.__dict__, f"{cls!r} is not slotted"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def build(values):", "    instance = new(cls)"]
    for position, name in enumerate(names):
        namespace[f"set{position}"] = getattr(cls, name).__set__
        lines.append(f"    set{position}(instance, values[{position}])")
    lines.append("    return instance")
    exec("\n".join(lines), namespace)  # our own field names, which attrs checked
    build: Callable[[tuple[Any, ...]], Any] = namespace["build"]
    return build


_ADDED = "raftq.codec.added"


def added(default: Any, **field_options: Any) -> Any:
    """A field of a positional class added after its first release (``register_positional``):
    ``default`` (a value, or ``attrs.Factory``) when an entry does not carry it; any other
    ``attrs.field`` option (``validator=...``) as usual."""
    return attrs.field(default=default, metadata={_ADDED: True}, **field_options)


def _plain_default(field: attrs.Attribute[Any]) -> Any:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        assert not default.takes_self, f"{field.name}: a positional default cannot take self"
        default = default.factory()
    return converter.unstructure(default)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of the fields ``names`` of a value, as a tuple (even of one field)."""
    getter = operator.attrgetter(*names)
    return getter if len(names) > 1 else lambda value: (getter(value),)


def _without_default_tail(items: list[Any], required: int, defaults: list[Any]) -> list[Any]:
    """``items`` without the fields at the end that hold their defaults."""
    end = len(items)
    while end > required and items[end - 1] == defaults[end - 1 - required]:
        end -= 1
    return items[:end] if end < len(items) else items


def register_union(union: Any) -> None:
    """Register a Union of attrs classes, tagged by class name under ``TAG``."""
    configure_tagged_union(union, converter, tag_generator=_class_name, tag_name=TAG)
    _carried.append(union)


def _require_attrs_class(cls: type) -> None:
    if not attrs.has(cls):
        raise TypeError(f"{cls!r} is not an attrs class")


def _class_name(cls: type) -> str:
    return cls.__name__


def unstructure(value: object, as_type: Any = None) -> Any:
    """The plain (CBOR-ready) form of ``value``; pass the Union as ``as_type`` to get the tag."""
    return converter.unstructure(value, unstructure_as=as_type)


def encode(value: object, as_type: Any = None) -> bytes:
    """Encode ``value`` to CBOR; pass the Union as ``as_type`` to get the tag."""
    fast = _fast_encoders.get(type(value))
    if fast is not None and (as_type is None or as_type is type(value)):
        return fast(value)
    return cbor2.dumps(converter.unstructure(value, unstructure_as=as_type))


@overload
def decode(data: bytes, cls: type[T]) -> T: ...
@overload
def decode(data: bytes, cls: Any) -> Any: ...
def decode(data: bytes, cls: Any) -> Any:
    """Decode CBOR ``data`` as ``cls``; any failure becomes ``DecodeError``."""
    try:
        raw = cbor2.loads(data, max_depth=limits.NESTING_DEPTH_MAX)
    except Exception as error:  # cbor2 raises several types for bad input
        raise DecodeError(f"not valid CBOR: {error}") from None
    return structure(raw, cls)


@overload
def structure(raw: Any, cls: type[T]) -> T: ...
@overload
def structure(raw: Any, cls: Any) -> Any: ...
def structure(raw: Any, cls: Any) -> Any:
    """Build ``cls`` from its plain form; any failure becomes ``DecodeError``."""
    try:
        return converter.structure(raw, cls)
    except DecodeError:
        raise
    except Exception as error:  # cattrs groups, validators' ValueError, TypeError, KeyError
        raise DecodeError(f"not a valid {_type_name(cls)}: {_first_line(error)}") from None


def _type_name(cls: Any) -> str:
    return getattr(cls, "__name__", None) or str(cls)


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0]


def encode_plain_sequence(items: Iterable[object]) -> bytes:
    """A CBOR sequence (RFC 8742: items one after another) of plain values. Items are encoded
    as they come, so a million rows never exist as one list."""
    out = io.BytesIO()
    encoder = cbor2.CBOREncoder(out)
    for item in items:
        encoder.encode(item)
    return out.getvalue()


def decode_plain_sequence(data: bytes) -> Iterator[Any]:
    """The items of a CBOR sequence, decoded one at a time as the caller asks for them: a
    reader that turns each into its own objects holds one raw item at a time, not all."""
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, max_depth=limits.NESTING_DEPTH_MAX)
    while stream.tell() < len(data):
        try:
            item = decoder.decode()
        except Exception as error:  # cbor2 raises several types for bad input
            raise DecodeError(f"not valid CBOR at byte {stream.tell()}: {error}") from None
        yield item
