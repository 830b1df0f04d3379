"""Scoring token sequences: the prefix-cached scorer (shared prefix encoded once, choices as tree branches),
its mask planning, the plain reference scorer and out-of-memory back-off."""
