"""Pure functions over the profile model: slices, top functions, call trees, diff, summary.

Nothing here knows about HTTP, databases or language models: the command
line, the server and the agent's tools all call these functions.
"""

from flamesight.analysis.breakdown import ProfileShare, profile_breakdown
from flamesight.analysis.calltree import CallNode, CallTree, call_tree, callees, callers
from flamesight.analysis.diff import FunctionChange, ProfileDiff, diff_profiles, diff_ranges
from flamesight.analysis.paths import HotPath, fold_chain, hot_paths
from flamesight.analysis.search import search_frames
from flamesight.analysis.summary import Summary, estimate_tokens, render_markdown, summary
from flamesight.analysis.top import FunctionWeight, TopFunctions, function_weights, top_functions

__all__ = [
    "CallNode",
    "CallTree",
    "FunctionChange",
    "FunctionWeight",
    "HotPath",
    "ProfileDiff",
    "ProfileShare",
    "Summary",
    "TopFunctions",
    "call_tree",
    "callees",
    "callers",
    "diff_profiles",
    "diff_ranges",
    "estimate_tokens",
    "fold_chain",
    "function_weights",
    "hot_paths",
    "profile_breakdown",
    "render_markdown",
    "search_frames",
    "summary",
    "top_functions",
]
