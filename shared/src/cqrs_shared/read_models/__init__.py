"""Read models declared once, for the projector that writes them and the query service that serves them.

- `declarations`: tables, typed columns, keys, indexes, what clients may filter and sort on;
- `definitions`: projections as data (typed per-event row handlers, joined-column SQL, migrations);
- `notifications`: the projector-to-query contract (`read.*` names, the NOTIFY channel and format);
- `identifiers`: the one rule for names quoted into SQL;
- one module per projection (`shop`), found by name with `definition_named`.
"""

from cqrs_shared.read_models.declarations import (
    Catalog,
    Column,
    ColumnType,
    Filter,
    Index,
    Projection,
    RangeParameter,
    ReadModel,
    Relation,
    range_parameters,
)
from cqrs_shared.read_models.definitions import (
    Derivation,
    EventRejectedError,
    Fact,
    ProjectionDefinition,
    Row,
    RowFold,
    definition_named,
    existing,
    merged_catalog,
    stamped,
)
from cqrs_shared.read_models.identifiers import DeclarationError, check_identifier

__all__ = [
    "Catalog",
    "Column",
    "ColumnType",
    "DeclarationError",
    "Derivation",
    "EventRejectedError",
    "Fact",
    "Filter",
    "Index",
    "Projection",
    "ProjectionDefinition",
    "RangeParameter",
    "ReadModel",
    "Relation",
    "Row",
    "RowFold",
    "check_identifier",
    "definition_named",
    "existing",
    "merged_catalog",
    "range_parameters",
    "stamped",
]
