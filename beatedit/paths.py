"""Where each stage reads and writes, derived from params.yaml's path keys only.

One source for every path: a stage writes under its config key (``features.out_dir``, ...) and
the next stage reads through the same key, so moving an output in params.yaml moves its readers
with it. dvc.yaml templates its outs and data deps from the same keys (``${features.out_dir}``);
``tests/unit/test_dvc_yaml.py`` checks that dvc.yaml and ``STAGE_OUTS`` / ``STAGE_READS`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from beatedit.config import Config

#: the name of each stage's metrics file and plots folder (the contract: metrics/<stage>.json, evaluate -> eval)
FILE_NAMES = {"corpus": "corpus", "stems": "stems", "features": "features", "preferences": "preferences",
                 "reward": "reward", "rlhf": "rlhf", "evaluate": "eval", "frozen_testset": "frozen_testset", "report": "report"}

#: the stages of the final report (`make report`): `make pipeline` (flows/pipeline.py) never runs them, so no decision
#: of the pipeline (training, checkpoints, tuning, promotion) can look at the frozen test set
REPORT_STAGES = ("frozen_testset", "report")



def human_analyses_dir(votes_path: str | Path) -> Path:
    """Where ``beatedit feedback export`` puts the beat features of uploaded songs: ``<votes folder>/analyses``."""
    return Path(votes_path).parent / "analyses"

@dataclass(frozen=True)
class StagePaths:
    """Every stage's output folder (from params.yaml) and the files the stages exchange inside them."""

    audio_dir: Path  # data.audio_dir: the songs (the generated corpus's audio or the user's folder)
    corpus_dir: Path  # data.corpus_dir
    stems_dir: Path  # stems.cache_dir
    features_dir: Path  # features.out_dir
    realmusic_dir: Path  # features.realmusic_dir: the real-music validation renders (content-cached)
    preferences_dir: Path  # preferences.out_dir
    human_votes: Path | None  # preferences.human_votes_path (merged when it exists)
    human_analyses: Path | None  # preferences.human_analyses_dir: beat features of uploaded songs (exported with the votes)
    reward_dir: Path  # reward.out_dir
    rlhf_dir: Path  # rlhf.out_dir
    rlhf_runs_dir: Path  # rlhf.runs_dir
    evaluate_dir: Path  # evaluate.out_dir
    frozen_dir: Path  # report.data_dir: the frozen test set (corpus/, stems/, features/, metrics/)
    report_dir: Path  # report.out_dir
    metrics_dir: Path  # metrics_dir
    plots_dir: Path  # plots_dir

    @classmethod
    def from_config(cls, cfg: Config) -> StagePaths:
        human = cfg.preferences.human_votes_path
        return cls(audio_dir=Path(cfg.data.audio_dir), corpus_dir=Path(cfg.data.corpus_dir), stems_dir=Path(cfg.stems.cache_dir),
                   features_dir=Path(cfg.features.out_dir),
                   realmusic_dir=Path(cfg.features.realmusic_dir), preferences_dir=Path(cfg.preferences.out_dir),
                   human_votes=Path(human) if human else None,
                   human_analyses=Path(cfg.preferences.human_analyses_dir) if cfg.preferences.human_analyses_dir else None,
                   reward_dir=Path(cfg.reward.out_dir), rlhf_dir=Path(cfg.rlhf.out_dir),
                   rlhf_runs_dir=Path(cfg.rlhf.runs_dir), evaluate_dir=Path(cfg.evaluate.out_dir),
                   frozen_dir=Path(cfg.report.data_dir), report_dir=Path(cfg.report.out_dir),
                   metrics_dir=Path(cfg.metrics_dir), plots_dir=Path(cfg.plots_dir))

    # corpus: the generator writes audio/, stems/, truth/ under corpus_dir; both modes write the manifest
    @property
    def corpus_manifest(self) -> Path:
        return self.corpus_dir / "manifest.json"

    @property
    def corpus_stems(self) -> Path:
        return self.corpus_dir / "stems"

    @property
    def corpus_truth(self) -> Path:
        return self.corpus_dir / "truth"

    # features
    @property
    def features_index(self) -> Path:
        return self.features_dir / "index.parquet"

    def feature_file(self, song_id: str) -> Path:
        return self.features_dir / f"{song_id}.npz"


    def song_file(self, song_id: str) -> Path:
        """A song's beat features: the features stage's file, else an upload's analysis exported with its votes."""
        own = self.feature_file(song_id)
        if own.exists() or self.human_analyses is None:
            return own
        upload = self.human_analyses / f"{song_id}.npz"
        return upload if upload.exists() else own

    # preferences
    @property
    def pairs_table(self) -> Path:
        return self.preferences_dir / "pairs.parquet"

    @property
    def splits_table(self) -> Path:
        return self.preferences_dir / "splits.csv"

    # reward
    @property
    def reward_checkpoint(self) -> Path:
        return self.reward_dir / "model.pt"

    @property
    def reward_registry(self) -> Path:
        return self.reward_dir / "registry.json"

    # rlhf
    @property
    def policy_checkpoint(self) -> Path:
        return self.rlhf_dir / "policy.pt"

    @property
    def reference_checkpoint(self) -> Path:
        return self.rlhf_dir / "reference.pt"

    @property
    def policy_registry(self) -> Path:
        return self.rlhf_dir / "registry.json"

    # evaluate
    @property
    def eval_results(self) -> Path:
        return self.evaluate_dir / "results.parquet"

    @property
    def eval_decision(self) -> Path:
        return self.evaluate_dir / "decision.json"

    @property
    def eval_renders(self) -> Path:
        return self.evaluate_dir / "renders"

    @property
    def listening_set(self) -> Path:
        """The listening set (pairs.json + renders) the feedback page serves by default."""
        return self.evaluate_dir / "listening"

    # frozen test set and report
    @property
    def frozen_features_dir(self) -> Path:
        return self.frozen_dir / "features"

    @property
    def report_results(self) -> Path:
        return self.report_dir / "results.parquet"

    @property
    def report_real_music(self) -> Path:
        return self.report_dir / "real_music.parquet"

    @property
    def report_table(self) -> Path:
        return self.report_dir / "table.md"

    @property
    def report_policies(self) -> Path:
        return self.report_dir / "policies"

    # metrics and plots
    def metrics(self, stage: str) -> Path:
        return self.metrics_dir / f"{FILE_NAMES[stage]}.json"

    def plots(self, stage: str) -> Path:
        return self.plots_dir / FILE_NAMES[stage]

    @staticmethod
    def quarantine_report(stage_out: Path) -> Path:
        return Path(stage_out) / "quarantine.json"


def frozen_testset_overrides(cfg: Config) -> list[str]:
    """``--set`` overrides that point the corpus, stems and features stages at the frozen test set: the same generator
    and front end, another seed and song count, every output (metrics and plots too) under ``report.data_dir``."""
    if cfg.report.corpus_seed == cfg.data.corpus.seed and cfg.data.use_generated_corpus:
        from beatedit.config import ConfigError

        raise ConfigError(f"params.yaml: report.corpus_seed must differ from data.corpus.seed ({cfg.data.corpus.seed}): "
                          "the frozen test set would be the training corpus")
    d = cfg.report.data_dir
    return [f"data.corpus_dir={d}/corpus", f"data.audio_dir={d}/corpus/audio", "data.use_generated_corpus=true",
            f"data.corpus.n_songs={cfg.report.n_songs}", f"data.corpus.seed={cfg.report.corpus_seed}",
            f"stems.cache_dir={d}/stems", f"features.out_dir={d}/features", f"metrics_dir={d}/metrics", f"plots_dir={d}/plots"]


def stage_outs(p: StagePaths) -> dict[str, list[str]]:
    """Each stage's DVC ``outs`` (what dvc.yaml must declare)."""
    return {"corpus": [str(p.corpus_dir)], "stems": [str(p.stems_dir)], "features": [str(p.features_dir)],
            "preferences": [str(p.preferences_dir)], "reward": [str(p.reward_dir)], "rlhf": [str(p.rlhf_dir)],
            "evaluate": [str(p.evaluate_dir)], "frozen_testset": [str(p.frozen_dir)], "report": [str(p.report_dir)]}


def stage_reads(p: StagePaths) -> dict[str, list[str]]:
    """Each stage's data deps: the upstream outputs it reads (what dvc.yaml must declare besides code)."""
    audio, corpus = str(p.audio_dir), str(p.corpus_dir)
    feats, prefs, reward, rlhf = str(p.features_dir), str(p.preferences_dir), str(p.reward_dir), str(p.rlhf_dir)
    # the human votes (a committed, possibly empty table) and the uploads' analyses exported with them: new votes re-run it
    votes = [str(p.human_votes)] if p.human_votes is not None else []
    votes += [str(p.human_analyses)] if p.human_votes is not None and p.human_analyses is not None else []
    return {"corpus": [], "stems": [corpus, audio], "features": [corpus, str(p.stems_dir), audio], "preferences": [feats, audio, *votes],
            "reward": [feats, prefs, *votes[1:]], "rlhf": [feats, prefs, reward], "evaluate": [feats, prefs, reward, rlhf],
            "frozen_testset": [], "report": [str(p.frozen_dir), feats, prefs, reward, rlhf]}


def stage_metrics(p: StagePaths) -> dict[str, list[str]]:
    """Each stage's DVC ``metrics`` file."""
    return {stage: [str(p.metrics(stage))] for stage in FILE_NAMES}


def stage_plots(p: StagePaths) -> dict[str, list[str]]:
    """Each stage's plot files: declared in dvc.yaml as ``outs`` with ``cache: false`` and drawn once by the top-level ``plots``."""
    return {"corpus": [], "stems": [], "features": [str(p.plots("features") / f) for f in ("beat_grid.png", "realmusic_beat_f.png", "realmusic.csv")], "preferences": [],
            "reward": [str(p.plots("reward") / "history.csv")],
            "rlhf": [str(p.plots("rlhf") / "training.csv"), str(p.plots("rlhf") / "overoptimization.csv")],
            "evaluate": [str(p.plots("evaluate") / "win_rates.csv"), str(p.plots("evaluate") / "actions.csv"),
                         str(p.plots("evaluate") / "editors.csv")],
            "frozen_testset": [], "report": [str(p.plots("report") / "win_rates.csv"), str(p.plots("report") / "win_rates.png")]}
