"""Compiling a pack: conditions, features and each stage's plan, in a neutral form."""
