"""fnedge: tiny function-calling models for the edge (data -> train -> export -> runtime -> bench)."""

__version__ = "0.1.0"
