"""Accuracy from LoadGen's accuracy log, separate from the harness (as in MLPerf)."""

from ckvision.accuracy.scoring import format_accuracy, score_accuracy_log, score_entries

__all__ = ["format_accuracy", "score_accuracy_log", "score_entries"]
