"""Developer tools that read the code itself (no framework imports): the import graph, code fingerprints."""
