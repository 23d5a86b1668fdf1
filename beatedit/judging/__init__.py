"""Judges of an edit: the dense per-step reward (dense), the simulated listener that labels
preferences (listener), and win rates / bootstrap statistics (statistics)."""
