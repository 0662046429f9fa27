"""Analysis of recorded runs: entries -> DataFrame -> tables and plots."""

from ckvision.analysis.frame import load_experiments
from ckvision.analysis.plots import plot_throughput
from ckvision.analysis.tables import summary_table

__all__ = ["load_experiments", "plot_throughput", "summary_table"]
