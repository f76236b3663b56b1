"""Views of the example domain. Only this package names shop types; the engine is generic."""
