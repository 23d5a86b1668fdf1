"""Unit tests: one module or function at a time, small synthetic inputs, seconds each."""
