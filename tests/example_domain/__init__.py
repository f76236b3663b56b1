"""A second example domain, `Product`, kept as a test: what adding an aggregate and its read model
takes (the files of this package; `test_product_example` checks the list cannot silently grow)."""
