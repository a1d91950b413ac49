"""The public SDK: apps, functions, classes and the decorators users write."""
