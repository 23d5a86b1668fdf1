"""Music to work on: the generated corpus with exact ground truth (generator) and rendered scores
from music21's corpus for checks on music no one here wrote (realmusic)."""
