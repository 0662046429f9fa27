"""Results of recorded runs, in one home: entries -> DataFrame (:mod:`.frame`) -> tables
(:mod:`.tables`, :mod:`.sections`), plots (:mod:`.plots`), what the CLI prints
(:mod:`.console`) and the self-contained HTML report (:mod:`.report`)."""

from ckvision.analysis.frame import load_experiments
from ckvision.analysis.plots import plot_throughput
from ckvision.analysis.tables import summary_table

__all__ = ["load_experiments", "plot_throughput", "summary_table"]
