"""flood-py: a Python ServerApp that floods one node with instructions (Sepal's quota tests)."""
