"""Turn pydantic validation failures into one-line :class:`InvalidInputError` messages."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from coreselect.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], values: dict[str, Any], what: str) -> M:
    """``model(**values)``, or an error naming each bad field, its problem and the valid fields."""
    try:
        return model(**values)
    except ValidationError as err:
        problems = "; ".join(_describe(model, e) for e in err.errors())
        valid = ", ".join(model.model_fields) or "none"
        raise InvalidInputError(f"bad {what}: {problems}; valid fields: {valid}") from None


def _describe(model: type[BaseModel], error: Any) -> str:
    loc = ".".join(map(str, error["loc"])) or "value"
    field = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    meaning = f" ({field.description})" if field is not None and field.description else ""
    got = "" if error["type"] == "extra_forbidden" else f", got {error['input']!r}"
    return f"{loc}{meaning}: {error['msg']}{got}"
