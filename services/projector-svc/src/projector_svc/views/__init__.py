"""Projections of the example domain. Only this package names shop types."""
