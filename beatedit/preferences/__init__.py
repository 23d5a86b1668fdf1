"""Preference data: candidate edits of one song and pairs labelled by the simulated listener (pairs)."""
