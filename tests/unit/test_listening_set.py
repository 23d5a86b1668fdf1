"""The listening set's pair choice (beatedit.feedback.listening) and the listening thresholds (listening_gate)."""

from __future__ import annotations

import pandas as pd
import pytest

from beatedit.editing.edl import EDL, Segment
from beatedit.feedback.listening import select_listening_pairs, seam_times
from beatedit.feedback.listening_gate import check_min_listen, heard_enough, required_seconds


def _results(rewards: dict[tuple[str, str], float], same_as: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """(item, editor) -> learned reward; edl strings are distinct unless ``same_as`` maps an edit to another editor's."""
    rows = []
    for (item, editor), r in rewards.items():
        edl = f"edl:{item}:{(same_as or {}).get((item, editor), editor)}"
        rows.append({"song_id": item.split("@")[0], "item": item, "editor": editor, "target_ratio": 0.6, "edl": edl,
                     "beat_actions": [0, 0], "learned_reward": r})
    return pd.DataFrame(rows)


def test_champion_first_then_least_sure_pairs_on_the_least_sure_songs():
    df = _results({
        ("s1@0.5", "candidate"): 1.0, ("s1@0.5", "champion"): 0.0, ("s1@0.5", "search"): 0.95, ("s1@0.5", "fade"): 0.5, ("s1@0.5", "heuristic"): 0.9,
        ("s2@0.5", "candidate"): 1.0, ("s2@0.5", "champion"): 0.99, ("s2@0.5", "search"): 0.2, ("s2@0.5", "fade"): 0.3, ("s2@0.5", "heuristic"): 0.1,
        ("s3@0.5", "candidate"): 1.0, ("s3@0.5", "champion"): -1.0, ("s3@0.5", "search"): -1.0, ("s3@0.5", "fade"): -1.0, ("s3@0.5", "heuristic"): -1.0,
    })
    pairs = select_listening_pairs(df, n_songs=2, max_pairs=5)
    assert {p["song_id"] for p in pairs} == {"s1", "s2"}  # s3: the reward model is sure everywhere
    assert [p["opponent"] for p in pairs[:2]] == ["champion", "champion"]  # the champion is always among them
    assert [(p["song_id"], p["opponent"]) for p in pairs[2:]] == [("s1", "search"), ("s1", "heuristic"), ("s1", "fade")]
    assert all(p["a"]["editor"] == "candidate" for p in pairs)
    margins = [p["margin"] for p in pairs[2:]]
    assert margins == sorted(margins)


def test_identical_edits_are_not_paired_and_missing_columns_are_named():
    df = _results({("s1@0.5", "candidate"): 1.0, ("s1@0.5", "fade"): 0.5, ("s1@0.5", "heuristic"): 0.4},
                  same_as={("s1@0.5", "heuristic"): "fade"})
    assert [p["opponent"] for p in select_listening_pairs(df, 1, 10)] == ["fade"]
    assert select_listening_pairs(df, 0, 10) == []
    with pytest.raises(ValueError, match="beat_actions"):
        select_listening_pairs(df.drop(columns=["beat_actions"]), 1, 10)


def test_seam_times_in_output_seconds():
    edl = EDL(source_path="x.wav", source_sr=100, source_channels=1, source_samples=1000,
              segments=[Segment(0, 200), Segment(400, 500), Segment(500, 600), Segment(800, 900)])
    assert seam_times(edl) == [2.0, 4.0]  # 400 follows 200 (a splice), 500 follows 500 (contiguous), 800 follows 600


def test_listening_thresholds():
    assert required_seconds(5.0, 3.0) == pytest.approx(2.7)  # a short side counts as heard at 90% of its length
    assert required_seconds(5.0, None) == 5.0
    assert heard_enough(5.0, 5.0, 60.0) and not heard_enough(4.9, 5.0, 60.0)
    assert not heard_enough(None, 5.0, 60.0)  # not reported = not heard
    assert heard_enough(None, 0.0, 60.0)  # threshold 0 keeps every vote
    # the page's gate also opens past the first seam: the export accepts what the page accepted
    assert heard_enough(2.6, 5.0, 60.0, first_seam_s=2.0) and not heard_enough(2.4, 5.0, 60.0, first_seam_s=2.0)
    assert not heard_enough(2.6, 5.0, 60.0, first_seam_s=None)  # no seam: the threshold alone
    for bad in (-1, float("nan"), float("inf"), 601, "x"):
        with pytest.raises(ValueError, match="min_listen"):
            check_min_listen(bad)


def test_serve_without_renders_names_the_missing_listening_set(tmp_path, capsys, monkeypatch):
    from beatedit.feedback.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text((__import__("tests.conftest", fromlist=["REPO"]).REPO / "params.yaml").read_text()
                                     .replace("out_dir: artifacts/evaluate", "out_dir: elsewhere/eval"))
    assert main(["serve", "--params", "p.yaml"]) == 2
    err = capsys.readouterr().err
    assert "elsewhere/eval/listening: no listening set yet" in err and "--renders" in err


@pytest.mark.parametrize("argv, words", [
    (["export", "--min-listened", "-1"], "--min-listened"),
    (["export", "--min-listened", "nan"], "--min-listened"),
    (["serve", "--min-listen", "700"], "--min-listen"),
    (["serve", "--min-listen", "soon"], "--min-listen"),
])
def test_bad_listening_thresholds_are_refused(argv, words, capsys):
    from beatedit.feedback.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err
