"""Workflows: API-format graphs, their bindings to commands, and checks against a server."""

from core.workflows.loader import Catalog, load_catalog, load_graph, load_workflow
from core.workflows.model import InputFile, Param, ParamType, Target, Workflow
from core.workflows.validate import runnable, validate_graph

__all__ = [
    "Catalog",
    "InputFile",
    "Param",
    "ParamType",
    "Target",
    "Workflow",
    "load_catalog",
    "load_graph",
    "load_workflow",
    "runnable",
    "validate_graph",
]
