"""dvc.yaml cannot drift from the code: paths come from params.yaml's keys, code deps are the stages' import closures."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from dvc.parsing.context import Context

from beatedit.config import Config, config_to_dict, load_config
from beatedit.devtools.import_graph import code_dep_problems, stage_closures, unresolved_imports
from beatedit.paths import StagePaths, stage_metrics, stage_outs, stage_plots, stage_reads
from tests.conftest import REPO

STAGES = ["corpus", "stems", "features", "preferences", "reward", "rlhf", "evaluate", "frozen_testset", "report"]


def _entries(items: list | None) -> list[str]:
    """dvc.yaml list entries: plain strings or one-key mappings (``path: {cache: false}``)."""
    return [next(iter(i)) if isinstance(i, dict) else str(i) for i in items or []]


def _resolved_stages(params: dict) -> dict:
    """dvc.yaml's stages with ``${...}`` resolved by DVC's own templating against ``params``."""
    return Context(params).resolve(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _moved_params() -> tuple[dict, Config]:
    """params.yaml with every path key moved, so a hard-coded path in dvc.yaml no longer matches."""
    cfg = load_config(REPO / "params.yaml")
    moved = dataclasses.replace(
        cfg, metrics_dir="m2", plots_dir="p2",
        data=dataclasses.replace(cfg.data, corpus_dir="d2/corpus", audio_dir="d2/corpus/audio"),
        stems=dataclasses.replace(cfg.stems, cache_dir="d2/stems"),
        features=dataclasses.replace(cfg.features, out_dir="d2/features"),
        preferences=dataclasses.replace(cfg.preferences, out_dir="d2/prefs", human_votes_path="d2/votes/human.parquet"),
        reward=dataclasses.replace(cfg.reward, out_dir="a2/reward"),
        rlhf=dataclasses.replace(cfg.rlhf, out_dir="a2/rlhf"),
        evaluate=dataclasses.replace(cfg.evaluate, out_dir="a2/evaluate"),
        report=dataclasses.replace(cfg.report, data_dir="d2/frozen", out_dir="a2/report"))
    return json.loads(json.dumps(config_to_dict(moved))), moved  # tuples -> lists, as in YAML


@pytest.mark.parametrize("which", ["params.yaml", "every path key moved"])
def test_outs_and_data_deps_are_the_paths_modules(which):
    if which == "params.yaml":
        params, cfg = yaml.safe_load((REPO / "params.yaml").read_text()), load_config(REPO / "params.yaml")
    else:
        params, cfg = _moved_params()
    stages = _resolved_stages(params)
    paths = StagePaths.from_config(cfg)
    assert list(stages) == STAGES
    # plot files are stage outs (cache: false), drawn only by the top-level plots (test_each_plot_is_drawn_once_with_named_axes)
    expected = {"outs": {s: stage_outs(paths)[s] + stage_plots(paths)[s] for s in STAGES}, "metrics": stage_metrics(paths),
                "plots": {s: [] for s in STAGES}}
    for stage, st in stages.items():
        for kind, want in expected.items():
            assert _entries(st.get(kind)) == want[stage], f"stage {stage}: dvc.yaml {kind} {_entries(st.get(kind))} != {want[stage]} (beatedit/paths.py)"
        data_deps = [d for d in _entries(st.get("deps")) if not d.endswith(".py")]
        assert data_deps == stage_reads(paths)[stage], f"stage {stage}: dvc.yaml data deps {data_deps} != {stage_reads(paths)[stage]} (beatedit/paths.py)"


def test_top_level_plots_follow_plots_dir():
    params, cfg = _moved_params()
    plots = Context(params).resolve(yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"])
    files = [f for p in plots for f in ([p] if isinstance(p, str) else next(iter(p.values()))["y"])]
    declared = {f for fs in stage_plots(StagePaths.from_config(cfg)).values() for f in fs}
    assert files and set(files) <= declared, f"dvc.yaml plots {sorted(set(files) - declared)} are no stage's plot files"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif")


def plot_problems(dvc_yaml: dict) -> list[str]:
    """Why `dvc plots show` would draw something twice or unreadably: a file in a stage's ``plots:`` (DVC draws it
    again with the default template, every column against the row number), a definition id or a (file, column) drawn
    twice against the same x, a data plot without a template, title or named x / y axes, or an image declared twice."""
    problems = [f"stage {name}: plots: {_entries(st['plots'])} (declare plot files as outs with cache: false; draw them in the top-level plots)"
                for name, st in dvc_yaml.get("stages", {}).items() if st.get("plots")]
    seen_ids: set[str] = set()
    drawn: set[tuple[str, str, str]] = set()  # (file, column, x): the same column against another x is another view
    for item in dvc_yaml.get("plots") or []:
        plot_id, props = (item, None) if isinstance(item, str) else next(iter(item.items()))
        if plot_id in seen_ids:
            problems.append(f"plot {plot_id}: declared twice")
        seen_ids.add(plot_id)
        if props is None or not isinstance(props.get("y"), dict):
            if not str(plot_id).lower().endswith(IMAGE_SUFFIXES):
                problems.append(f"plot {plot_id}: a data file without a definition (template, x, y, axis titles)")
            continue
        missing = [k for k in ("template", "title", "x", "x_label", "y_label") if not props.get(k)]
        if missing:
            problems.append(f"plot {plot_id}: no {', '.join(missing)}")
        for key in ("x_label", "y_label"):
            if str(props.get(key, "")).strip().lower() in ("x", "y", "value", "step"):
                problems.append(f"plot {plot_id}: {key} {props[key]!r} names nothing")
        for file, columns in props["y"].items():
            for column in [columns] if isinstance(columns, str) else columns:
                if (file, column, props.get("x")) in drawn:
                    problems.append(f"plot {plot_id}: {file} column {column} is already drawn against {props.get('x')} by another plot")
                drawn.add((file, column, props.get("x")))
    return problems


def test_each_plot_is_drawn_once_with_named_axes():
    params, cfg = _moved_params()
    resolved = {"stages": _resolved_stages(params),
                "plots": Context(params).resolve(yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"])}
    assert not plot_problems(resolved), "\n".join(plot_problems(resolved))
    drawn = {f for p in resolved["plots"] for f in ([p] if isinstance(p, str) else next(iter(p.values()))["y"])}
    files = {f for fs in stage_plots(StagePaths.from_config(cfg)).values() for f in fs}
    assert drawn == files, f"plot files no top-level plot draws: {sorted(files - drawn)}"


def test_plot_problems_catches_a_duplicate_and_a_missing_axis_title():
    good = {"template": "linear", "title": "t", "x": "epoch", "x_label": "epoch", "y_label": "loss", "y": {"h.csv": ["loss"]}}
    assert plot_problems({"plots": [{"loss": good}, "grid.png"]}) == []
    twice = {"stages": {"reward": {"plots": [{"h.csv": {"cache": False}}]}}, "plots": [{"loss": good}, "grid.png", "grid.png"]}
    assert [p.split(":")[0] for p in plot_problems(twice)] == ["stage reward", "plot grid.png"]
    unnamed = {k: v for k, v in good.items() if k != "y_label"}
    assert plot_problems({"plots": [{"loss": unnamed}]}) == ["plot loss: no y_label"]
    assert plot_problems({"plots": [{"loss": good}, {"again": good}]}) == ["plot again: h.csv column loss is already drawn against epoch by another plot"]
    assert plot_problems({"plots": [{"loss": good}, {"per_step": {**good, "x": "step", "x_label": "optimizer step"}}]}) == []
    assert plot_problems({"plots": [{"loss": good | {"y_label": "y"}}]}) == ["plot loss: y_label 'y' names nothing"]
    assert plot_problems({"plots": ["h.csv"]}) == ["plot h.csv: a data file without a definition (template, x, y, axis titles)"]


def test_code_deps_are_exactly_each_stages_import_closure():
    problems = code_dep_problems(REPO / "dvc.yaml", REPO)
    assert not problems, "\n".join(problems) + "\nfix: python -m beatedit.devtools.import_graph --write"


def test_every_stage_import_names_a_file():
    missing = [f"{f}:{i.lineno} imports {i.name}, which is no file" for files in stage_closures(REPO / "dvc.yaml", REPO).values()
               for f in files for i in unresolved_imports(REPO / f, REPO)]
    assert not sorted(set(missing)), "\n".join(sorted(set(missing)))


def test_default_paths_are_the_pipelines_paths():
    p = StagePaths.from_config(Config())
    got = [p.corpus_manifest, p.stems_dir, p.features_index, p.pairs_table, p.splits_table, p.reward_checkpoint, p.policy_checkpoint,
           p.reference_checkpoint, p.rlhf_runs_dir, p.eval_decision, p.metrics("evaluate"), p.plots("evaluate"), p.human_votes]
    assert [str(x) for x in got] == [
        "data/corpus/manifest.json", "data/stems", "data/features/index.parquet", "data/preferences/pairs.parquet",
        "data/preferences/splits.csv", "artifacts/reward/model.pt", "artifacts/rlhf/policy.pt", "artifacts/rlhf/reference.pt",
        "artifacts/rlhf_runs", "artifacts/evaluate/decision.json", "metrics/eval.json", "plots/eval", "data/feedback/human_pairs.parquet"]


def test_make_pipeline_never_runs_the_report_stages():
    """The frozen test set is looked at by the final report only: `make pipeline` (flows.pipeline) skips its stages."""
    from beatedit.paths import REPORT_STAGES
    from flows.pipeline import dvc_stages

    stages = dvc_stages(REPO / "dvc.yaml")
    assert set(REPORT_STAGES) <= set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert stages == STAGES[:7] and not set(stages) & set(REPORT_STAGES)
    assert "dvc repro report" in (REPO / "Makefile").read_text()


def test_frozen_test_set_overrides_move_every_output_away_from_the_main_corpus():
    from beatedit.paths import frozen_testset_overrides

    cfg = load_config(REPO / "params.yaml")
    frozen = load_config(REPO / "params.yaml", frozen_testset_overrides(cfg))
    main, other = StagePaths.from_config(cfg), StagePaths.from_config(frozen)
    for name in ("corpus_dir", "audio_dir", "stems_dir", "features_dir", "metrics_dir", "plots_dir"):
        assert str(getattr(other, name)).startswith(cfg.report.data_dir), name
        assert getattr(other, name) != getattr(main, name)
    assert frozen.data.corpus.seed == cfg.report.corpus_seed != cfg.data.corpus.seed
    assert frozen.data.corpus.n_songs == cfg.report.n_songs >= 200
    with pytest.raises(Exception, match="report.corpus_seed must differ from data.corpus.seed"):
        frozen_testset_overrides(load_config(REPO / "params.yaml", [f"report.corpus_seed={cfg.data.corpus.seed}"]))


def test_report_refuses_a_missing_frozen_test_set_naming_the_file(tmp_path):
    from tasks.report import FrozenTestSetMissing, frozen_songs

    cfg = load_config(REPO / "params.yaml", [f"report.data_dir={tmp_path / 'frozen'}"])
    with pytest.raises(FrozenTestSetMissing, match=r"frozen/features/index.parquet: the frozen test set is not built"):
        frozen_songs(cfg)
