"""Data tests: the corpus generator, the audio front end, real-music rendering, preference data."""
