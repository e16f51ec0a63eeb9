"""Models built from stored rows without validation, as cheaply as Python allows.

A read that returns many objects (a page of messages, a stream's events)
spends much of its time building them. ``Model.model_construct(**values)``
loops over every field's alias and default; a row read back holds every field
already, so :func:`constructor` gives a function that stores the dict as the
object's ``__dict__`` in four slot stores, which is what ``model_construct``
ends with. That is only the same thing while the model has no hook that
``model_construct`` would run: :func:`constructor` refuses a model that has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["constructor", "new", "set_dict", "set_extra", "set_fields_set", "set_private"]

M = TypeVar("M", bound=BaseModel)

new = object.__new__
# BaseModel's slots, set through their descriptors (one C call instead of object.__setattr__).
set_dict = BaseModel.__dict__["__dict__"].__set__
set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def all_fields(model: type[BaseModel]) -> set[str]:
    """The fields set of a ``model`` built with every field; ``TypeError`` if it has a hook.

    Every object built from a full row shares this one set (pydantic only
    ever adds a name to it, on assignment, and copies it for ``model_copy``):
    a set per object was ~8 % of building one.
    """
    if (
        model.__pydantic_root_model__
        or model.__pydantic_post_init__ is not None
        or model.__private_attributes__
        or model.model_config.get("extra") == "allow"
    ):
        raise TypeError(f"{model.__name__} has a construction hook: build it with model_construct")
    return set(model.model_fields)


def constructor(model: type[M]) -> Callable[[dict[str, Any]], M]:
    """``lambda values: model.model_construct(**values)`` for dicts holding every field."""
    fields = all_fields(model)

    def construct(values: dict[str, Any]) -> M:
        m: M = new(model)
        set_dict(m, values)
        set_fields_set(m, fields)
        set_extra(m, None)
        set_private(m, None)
        return m

    return construct
