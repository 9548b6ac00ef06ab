"""``@record``: typed record classes without ``dataclasses``.

``import dataclasses`` pulls in ``inspect`` (and with it ``re``, ``enum``, ``dis``, ``tokenize``),
about 16 ms on this machine — more than the interpreter's own start-up, on every ``pyrunc`` call.
The runtime only needs what a plain data class gives: an ``__init__`` from the annotated fields
(positional or keyword, with defaults), ``__repr__`` and ``__eq__``.  Mutable defaults are written
``field(list)`` and built fresh for each instance.  ``__slots__`` come from the annotations, so a
misspelt attribute fails loudly.
"""

__all__ = ["record", "field"]


class field:
    """A default built by calling ``factory()`` for each new instance."""

    __slots__ = ("factory",)

    def __init__(self, factory):
        self.factory = factory


_MISSING = object()


def record(cls):
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    namespace = {k: v for k, v in cls.__dict__.items()
                 if k not in names and k not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = names
    new_cls = type(cls.__name__, cls.__bases__, namespace)
    new_cls.__qualname__ = cls.__qualname__

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments")
        for name, value in zip(names, args):
            setattr(self, name, value)
        for name in names[len(args):]:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                if isinstance(value, field):
                    value = value.factory()
            setattr(self, name, value)
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kwargs)}")

    def __repr__(self):
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{cls.__name__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    new_cls.__init__ = __init__
    new_cls.__repr__ = __repr__
    new_cls.__eq__ = __eq__
    new_cls.__hash__ = None
    new_cls._fields = names
    return new_cls
