"""Pure functions over the profile model: time slices, top functions and more."""

from flamesight.analysis.top import FunctionWeight, TopFunctions, function_weights, top_functions

__all__ = ["FunctionWeight", "TopFunctions", "function_weights", "top_functions"]
