"""The read-model declarations the query engine serves (declared once in `cqrs_shared.read_models`).

The query side calls a read model a view: `View` is `ReadModel`. Routes, OpenAPI schemas, SQL and
cursor formats are generated from these declarations; nothing else names a column.
"""

from __future__ import annotations

from cqrs_shared.read_models.declarations import Catalog as Catalog
from cqrs_shared.read_models.declarations import Column as Column
from cqrs_shared.read_models.declarations import ColumnType as ColumnType
from cqrs_shared.read_models.declarations import Filter as Filter
from cqrs_shared.read_models.declarations import Index as Index
from cqrs_shared.read_models.declarations import Projection as Projection
from cqrs_shared.read_models.declarations import RangeParameter as RangeParameter
from cqrs_shared.read_models.declarations import ReadModel
from cqrs_shared.read_models.declarations import Relation as Relation
from cqrs_shared.read_models.declarations import range_parameters as range_parameters
from cqrs_shared.read_models.identifiers import DeclarationError as DeclarationError

#: The query side's name for a read model.
View = ReadModel
