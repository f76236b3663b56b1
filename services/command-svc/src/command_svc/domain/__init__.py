"""Pure decision code: no broker, database, logging or clock. A unit test over imports keeps it so."""
