"""Sepal's dispatch benchmark app (Flower 1.20 Message API)."""
