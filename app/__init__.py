"""Application layer: the `beatedit` CLI and the production edit path. It sits above the domain
(beatedit/), the models (models/) and the orchestration (tasks/, flows/), and may import all of them;
nothing below imports it."""
