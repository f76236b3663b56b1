"""The read-model declarations the query engine serves (declared once in `cqrs_shared.read_models`).

The query side calls a read model a view: `View` is `ReadModel`. Routes, OpenAPI schemas, SQL and
cursor formats are generated from these declarations; nothing else names a column.
"""

from __future__ import annotations

from cqrs_shared.read_models.declarations import (
    Catalog,
    Column,
    ColumnType,
    Filter,
    Index,
    Projection,
    RangeParameter,
    Relation,
    range_parameters,
)
from cqrs_shared.read_models.declarations import ReadModel as View
from cqrs_shared.read_models.identifiers import DeclarationError

__all__ = [
    "Catalog",
    "Column",
    "ColumnType",
    "DeclarationError",
    "Filter",
    "Index",
    "Projection",
    "RangeParameter",
    "Relation",
    "View",
    "range_parameters",
]
