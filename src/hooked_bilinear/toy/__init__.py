"""Toy tasks whose whole mechanism can be read from the weights (modular addition)."""
