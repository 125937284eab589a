"""What a route answers, written beside the route: the OpenAPI metadata of its view.

A route's blueprint decorates its view with an :class:`Operation`; ``tools/openapi.py``
(never deployed) reads the app's route table and these to build ``openapi.json``. What
the route table already says is not repeated here: the path and methods, whether a key is
needed (the route's authorizer), and the operation id (the view's name). Only plain data
is kept, so the deployed import pays nothing for the documentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

V = TypeVar("V", bound=Callable[..., Any])

_ATTRIBUTE = "__operation__"

# The query parameters of every list (tools/openapi.py PARAMETERS describes each).
PAGED = ("limit", "cursor")
# Several resources may answer 409 for a write that lost a race (optimistic locking).
CHANGED_MEANWHILE = "changed by another request at the same moment: try again"


@dataclass(frozen=True)
class Operation:
    """The OpenAPI description of one view; used as its decorator.

    A view serving two methods (SPEC's ``POST`` alias of ``PATCH``) is described once:
    ``alias`` names the alias method, documented as a pointer to the main one (its
    summary says so, it shows the first body example only and leaves ``main_note`` out).
    """

    summary: str
    tag: str
    description: str = ""
    main_note: str = ""  # said by the main method only, after the description
    alias: str | None = None
    query: tuple[str, ...] = ()  # query parameter names (tools/openapi.py PARAMETERS)
    body: type[BaseModel] | None = None
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    answer: type[BaseModel] | None = None  # JSON answer; None: no body (204) or `content`
    answer_example: Any = None
    answer_description: str = ""
    content: Mapping[str, dict[str, Any]] | None = None  # non-JSON answer: type -> schema
    conflict: str | None = None  # when it may answer 409, and why
    # It may answer 404 without an id in its path: its body names something missing.
    not_found: bool = False
    conflict_example: str = ""

    def __call__(self, view: V) -> V:
        setattr(view, _ATTRIBUTE, self)
        return view


def operation_of(view: Callable[..., Any]) -> Operation | None:
    """The description a view was decorated with, if any."""
    found = getattr(view, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None
