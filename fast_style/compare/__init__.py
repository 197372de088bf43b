"""Optimization vs feed-forward on the same photo: the experiment, its memory measurement, its reports."""

from fast_style.compare.experiment import (
    COLUMNS,
    REFINED,
    CompareReport,
    Row,
    evaluate_image,
    run_compare,
    steps_to_match,
)
from fast_style.compare.memory import PeakMemory
from fast_style.compare.reports import (
    OUTPUT_FILES,
    figure_for,
    make_figure,
    markdown_table,
    summary,
    write_csv,
    write_outputs,
)

__all__ = [
    "COLUMNS",
    "OUTPUT_FILES",
    "REFINED",
    "CompareReport",
    "PeakMemory",
    "Row",
    "evaluate_image",
    "figure_for",
    "make_figure",
    "markdown_table",
    "run_compare",
    "steps_to_match",
    "summary",
    "write_csv",
    "write_outputs",
]
