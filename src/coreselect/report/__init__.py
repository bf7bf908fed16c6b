"""Reports: tables, plots and the HTML page of a results store, read from the store alone (no data is loaded and
no strategy is created; what a figure needs beyond numbers, each run stored when it finished)."""

from coreselect.report.tables import MethodSummary, format_table, report, summarise

__all__ = ["MethodSummary", "format_table", "report", "summarise"]
