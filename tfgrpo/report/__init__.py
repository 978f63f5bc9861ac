"""The HTML report about a library: data gathered from the store, SVG plots, Jinja templates."""

from tfgrpo.report.build import ReportSummary, write_report

__all__ = ["ReportSummary", "write_report"]
