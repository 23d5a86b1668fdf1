"""Independent judge: audio-only scores for final held-out reports (never training or selection).

Shares no code with the simulated listener, the dense reward or the audio front end; see
``beatedit.judge.judge`` for the components and weights.
"""

from beatedit.judge.align import Piece, find_pieces
from beatedit.judge.analysis import JudgeInputError, Profile
from beatedit.judge.judge import COMPONENTS, WEIGHTS, JudgeScore, judge_batch, judge_edit, mean_scores, source_profile
from beatedit.judge.measures import EdgeReport, SeamReport

__all__ = ["COMPONENTS", "WEIGHTS", "EdgeReport", "JudgeInputError", "JudgeScore", "Piece", "Profile", "SeamReport",
           "find_pieces", "judge_batch", "judge_edit", "mean_scores", "source_profile"]
