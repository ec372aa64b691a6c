"""``Record``: ``typing.NamedTuple`` to the type checker, a cheaper tuple class at run time.

Why: the kubelet execs ``get-credentials`` once per image, and on a cache hit most of the time
is Python importing. ``import typing`` costs about 4 ms here and each ``NamedTuple`` class about
0.4 ms more (it compiles a ``__new__`` with ``exec``); the hot path had a dozen of them, which
put a cache hit past 1.5 times the cost of a bare Python plugin. This builds the same thing, a
tuple subclass with named read-only fields, defaults, ``_fields``, ``_asdict`` and
``_replace``, without either cost. mypy sees ``typing.NamedTuple`` and checks everything as such.

Use it exactly like NamedTuple: ``class Token(Record): username: str; password: str = ""``.
"""

from __future__ import annotations

from operator import itemgetter

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy treats it as True

if TYPE_CHECKING:
    from typing import NamedTuple as Record

    __all__ = ["Record"]
else:

    class _RecordMethods(tuple):
        __slots__ = ()
        _fields: tuple[str, ...] = ()
        _field_defaults: dict[str, object] = {}  # noqa: RUF012 - replaced per class

        def __new__(cls, *args, **kwargs):
            fields = cls._fields
            if not kwargs and len(args) == len(fields):
                return tuple.__new__(cls, args)
            if len(args) > len(fields):
                raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments")
            values = list(args)
            for name in fields[len(args):]:
                if name in kwargs:
                    values.append(kwargs.pop(name))
                elif name in cls._field_defaults:
                    values.append(cls._field_defaults[name])
                else:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
            if kwargs:
                raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kwargs)}")
            return tuple.__new__(cls, values)

        def __repr__(self):
            inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True))
            return f"{type(self).__name__}({inner})"

        def __getnewargs__(self):
            return tuple(self)

        def _asdict(self):
            return dict(zip(self._fields, self, strict=True))

        def _replace(self, **changes):
            return type(self)(**{**self._asdict(), **changes})

    class _RecordMeta(type):
        def __new__(mcs, name, bases, namespace):
            if not bases:  # Record itself
                return super().__new__(mcs, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))
            body = dict(namespace)
            defaults = {f: body.pop(f) for f in fields if f in body}
            for index, field in enumerate(fields):
                body[field] = property(itemgetter(index), doc=f"Alias for field {index}")
            body.update(__slots__=(), _fields=fields, _field_defaults=defaults,
                        __match_args__=fields)
            return super().__new__(mcs, name, (_RecordMethods,), body)

    class Record(metaclass=_RecordMeta):
        """Base of record classes; see the module docstring."""
