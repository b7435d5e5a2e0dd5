"""large-model: one large ArrayRecord to every node and back (Sepal's large-model benchmark)."""
