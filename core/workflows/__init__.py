"""Workflows: API-format graphs, their bindings to commands, and checks against a server."""

from core.workflows.loader import Catalog, load_catalog, load_graph, load_workflow
from core.workflows.model import FILE_TYPES, InputFile, Param, ParamType, Target, Workflow
from core.workflows.validate import adapt_graph, runnable, validate_graph, validate_workflow

__all__ = [
    "FILE_TYPES",
    "Catalog",
    "InputFile",
    "Param",
    "ParamType",
    "Target",
    "Workflow",
    "adapt_graph",
    "load_catalog",
    "load_graph",
    "load_workflow",
    "runnable",
    "validate_graph",
    "validate_workflow",
]
