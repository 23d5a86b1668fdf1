"""Where each stage reads and writes, relative to the repo root (mirrors dvc.yaml's deps/outs)."""

from pathlib import Path

CORPUS_DIR = Path("data/corpus")  # generated corpus: audio/, stems/, truth/, manifest.json
CORPUS_AUDIO = CORPUS_DIR / "audio"
CORPUS_STEMS = CORPUS_DIR / "stems"
CORPUS_TRUTH = CORPUS_DIR / "truth"
CORPUS_MANIFEST = CORPUS_DIR / "manifest.json"
STEMS_DIR = Path("data/stems")
FEATURES_DIR = Path("data/features")
FEATURES_INDEX = FEATURES_DIR / "index.parquet"
PREFERENCES_DIR = Path("data/preferences")
PAIRS_TABLE = PREFERENCES_DIR / "pairs.parquet"
HUMAN_PAIRS = Path("data/feedback/human_pairs.parquet")
REWARD_DIR = Path("artifacts/reward")
RLHF_DIR = Path("artifacts/rlhf")
EVAL_DIR = Path("artifacts/evaluate")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")


def quarantine_report(stage_out: Path) -> Path:
    return stage_out / "quarantine.json"
