"""flamesight: understand performance profiles with the help of language models."""

__version__ = "0.1.0"
