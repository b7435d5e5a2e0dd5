"""numpy-fedavg: deterministic numpy-only Flower 1.20 app used by Sepal's interop tests."""
