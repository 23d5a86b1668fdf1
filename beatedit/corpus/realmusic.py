"""Real-music test data with exact beat ground truth: music21 corpus -> MIDI -> FluidSynth.

Pieces nobody here wrote (from music21's bundled corpus) are rendered with a General MIDI
soundfont. Beat and downbeat times come from the score (measure offsets, time signature,
pickup bars; the beat is the notated one: half note in 2/2, dotted quarter in 6/8, 9/8, 12/8),
through the tempo map written into the MIDI file, not from the audio. Nothing rendered is
committed: everything goes to the folder you pass, cached by content (``piece_key``).

* ``VALIDATION_PIECES`` -- the real-music validation set (issue 16): 47 pieces in 2/2 ... 12/8,
  most without percussion, tempo maps (``rit`` / ``accel`` / ``drift``), swing, several GM
  instruments; the features stage reports ``realmusic_*`` figures on it (ours and librosa's
  ``beat_track``), ``bench/bench_realmusic.py`` adds madmom and real recordings.
* ``DEFAULT_PIECES`` / ``TEST_PIECES`` -- the older check, with a wood-block click on every
  beat (high and loud on downbeats): tracking is nearly trivial there, it tests the plumbing.

Needs the ``music21`` package and the ``fluidsynth`` binary with a GM soundfont
(Debian: ``apt-get install fluidsynth fluid-soundfont-gm``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")


@dataclass(frozen=True)
class Piece:
    corpus_path: str  # music21 corpus path, e.g. "bach/bwv10.7"
    bpm: float  # tempo in beats per minute (beat = the time signature's beat unit: dotted quarter in 6/8)
    measures: int | None = None  # render only the first N measures (None = whole piece)
    program: int = 0  # GM program for the melodic parts (0 piano, 48 strings, 19 organ ...)
    number: int | None = None  # tune number inside an ABC opus file (oneills1850, essenFolksong ...)
    percussion: str = "woodblock"  # "woodblock" (a click on every beat), "kit" (light drum kit) or "none"
    tempo_curve: str = "constant"  # "constant", "rit" (last quarter slows to 0.75x), "accel" (0.85x -> 1.1x), "drift" (+-6 %)
    swing: float = 0.5  # where the off-beat eighth of each quarter sounds (0.5 straight, 0.667 triplet swing)
    collection: str = ""  # group for per-collection figures (default: the corpus folder)

    @property
    def group(self) -> str:
        return self.collection or self.corpus_path.split("/", 1)[0]

    @property
    def name(self) -> str:
        base = self.corpus_path.rsplit(".", 1)[0] if self.corpus_path.endswith((".xml", ".krn", ".mxl", ".abc", ".musicxml")) \
            else self.corpus_path
        name = base.replace("/", "_").replace(".", "_").replace(" ", "_").replace("-", "_")
        return name + (f"_n{self.number}" if self.number is not None else "") + (f"_m{self.measures}" if self.measures else "")


# pieces in 4/4 and 3/4 (with and without pickup bars), several composers and GM instruments
DEFAULT_PIECES: tuple[Piece, ...] = (
    Piece("bach/bwv10.7", 92.0),
    Piece("bach/bwv11.6", 104.0),  # 3/4 with a repeat
    Piece("bach/bwv1.6", 84.0),  # 4/4 with a one-beat pickup
    Piece("bach/bwv122.6", 96.0, program=48),  # 3/4, strings
    Piece("bach/bwv101.7", 88.0, program=19),  # 4/4 with pickup, organ
    Piece("mozart/k155/movement2", 100.0, measures=32, program=40),  # 3/4 string quartet (violin patch)
    Piece("mozart/k156/movement2", 72.0, measures=16, program=48),  # 4/4 adagio, strings
    Piece("mozart/k156/movement3", 112.0, measures=32, program=48),  # 3/4 minuet, strings
    Piece("schubert/Lindenbaum.xml", 108.0, measures=32),  # 3/4 song, piano
    Piece("chopin/mazurka06-2.krn", 126.0, measures=32),  # 3/4 mazurka, piano
    Piece("corelli/opus3no1/1grave.xml", 66.0, program=48),  # 4/4 grave, strings
)

# The real-music VALIDATION set (issue 16): pieces from music21's bundled corpus that no one here wrote, in
# 2/2, 2/4, 3/4, 4/4, 6/8, 9/8 and 12/8 at 60-180 BPM (beat = the notated beat: half note in 2/2, dotted quarter
# in compound meters), most with NO percussion, a light drum kit on some (folk tunes and songs are played
# that way), never the click track; tempo maps with ritardando / accelerando / drift, swing on hornpipes and
# ragtime, several GM instruments. Ground truth comes from the score. Groups give per-collection figures.
_N, _K = "none", "kit"
VALIDATION_PIECES: tuple[Piece, ...] = (
    # Bach chorales (4 voices, no percussion; one 12/8 pastorale)
    Piece("bach/bwv1.6", 84.0, 12, 19, percussion=_N, tempo_curve="rit", collection="bach"),
    Piece("bach/bwv326", 96.0, 14, 52, percussion=_N, collection="bach"),
    Piece("bach/bwv349", 100.0, 14, 0, percussion=_N, tempo_curve="drift", collection="bach"),
    Piece("bach/bwv334", 72.0, 10, 48, percussion=_N, collection="bach"),
    Piece("bach/bwv298", 88.0, 12, 19, percussion=_N, tempo_curve="rit", collection="bach"),
    Piece("bach/bwv248.23-2", 60.0, 8, 48, percussion=_N, collection="bach"),  # 12/8
    # classical string quartets / piano (no percussion)
    Piece("mozart/k80/movement3", 132.0, 24, 48, percussion=_N, collection="classical"),  # 3/4 minuet
    Piece("mozart/k458/movement4", 150.0, 32, 48, percussion=_N, tempo_curve="accel", collection="classical"),  # 2/4
    Piece("mozart/k458/movement1", 108.0, 24, 40, percussion=_N, collection="classical"),  # 6/8
    Piece("mozart/k155/movement3", 126.0, 28, 48, percussion=_N, tempo_curve="drift", collection="classical"),  # 2/4
    Piece("haydn/opus1no1/movement1", 96.0, 20, 48, percussion=_N, collection="classical"),  # 6/8
    Piece("haydn/opus74no1/movement1", 128.0, 16, 48, percussion=_N, tempo_curve="rit", collection="classical"),  # 4/4
    Piece("beethoven/opus18no1/movement2.mxl", 62.0, 10, 48, percussion=_N, collection="classical"),  # 9/8 adagio
    Piece("beethoven/opus59no3/movement2", 70.0, 16, 48, percussion=_N, tempo_curve="drift", collection="classical"),  # 6/8
    Piece("beethoven/opus18no1/movement4.mxl", 140.0, 28, 48, percussion=_N, collection="classical"),  # 2/4
    Piece("mozart/k545/movement1_exposition", 120.0, 12, 0, percussion=_N, tempo_curve="drift", collection="classical"),  # 4/4
    # romantic (no percussion)
    Piece("schumann_robert/opus41no1/movement3", 66.0, 14, 48, percussion=_N, collection="romantic"),  # 2/2 slow
    Piece("schumann_robert/opus41no1/movement2", 100.0, 20, 48, percussion=_N, tempo_curve="rit", collection="romantic"),  # 6/8
    Piece("schumann_clara/polonaise_op1n1", 92.0, 16, 0, percussion=_N, collection="romantic"),  # 3/4
    Piece("schubert/Lindenbaum.xml", 100.0, 24, 0, percussion=_N, tempo_curve="rit", collection="romantic"),  # 3/4
    Piece("schumann_clara/polonaise_op1n2", 138.0, 16, 0, percussion=_N, tempo_curve="drift", collection="romantic"),  # 3/4
    Piece("schumann_robert/dichterliebe_no2.xml", 72.0, 14, 0, percussion=_N, collection="romantic"),  # 2/4
    # renaissance polyphony (2/2 and 4/4, no percussion)
    Piece("palestrina/Agnus_01.krn", 64.0, 16, 52, percussion=_N, collection="renaissance"),
    Piece("palestrina/Agnus_02.krn", 70.0, 16, 19, percussion=_N, collection="renaissance"),
    Piece("monteverdi/madrigal.3.1.mxl", 76.0, 14, 52, percussion=_N, tempo_curve="rit", collection="renaissance"),
    Piece("monteverdi/madrigal.3.6.mxl", 80.0, 14, 52, percussion=_N, collection="renaissance"),
    # songs and ragtime (kit on some, swing on some)
    Piece("joplin/maple_leaf_rag.mxl", 92.0, 24, 0, percussion=_N, collection="song"),  # 2/4
    Piece("leadSheet/berlinAlexandersRagtime.mxl", 124.0, 16, 0, percussion=_K, swing=0.667, collection="song"),  # 4/4 swing
    Piece("leadSheet/fosterBrownHair.mxl", 84.0, 12, 24, percussion=_K, tempo_curve="drift", collection="song"),  # 4/4
    Piece("johnson_j_r/lift_every_voice.mxl", 66.0, 16, 0, percussion=_N, tempo_curve="rit", collection="song"),  # 6/8
    Piece("handel/rinaldo/Lascia_chio_pianga.mxl", 66.0, 12, 48, percussion=_N, collection="song"),
    Piece("liliuokalani/aloha_oe.mxl", 88.0, 16, 24, percussion=_K, collection="song"),
    # folk dance tunes (monophonic melody; a light kit on most, as a dance band would play them)
    Piece("ryansMammoth/IrishWashWomanJig.abc", 116.0, None, 73, percussion=_K, collection="folk"),  # 6/8
    Piece("ryansMammoth/BullyForYouJig.abc", 120.0, None, 21, percussion=_K, tempo_curve="accel", collection="folk"),  # 6/8
    Piece("ryansMammoth/HuntTheFoxJig.abc", 112.0, None, 73, percussion=_K, collection="folk"),  # 9/8 slip jig
    Piece("ryansMammoth/TimeOfDayJig.abc", 108.0, None, 40, percussion=_N, collection="folk"),  # 9/8
    Piece("ryansMammoth/GreenGrovesOfErinReel.abc", 104.0, None, 73, percussion=_K, collection="folk"),  # 2/2 reel
    Piece("ryansMammoth/AllTheRageReel.abc", 100.0, None, 21, percussion=_N, tempo_curve="drift", collection="folk"),  # 2/2
    Piece("ryansMammoth/TinWeddingHornpipe.abc", 84.0, None, 40, percussion=_K, swing=0.62, collection="folk"),  # 2/2 swung
    Piece("ryansMammoth/NorfolkHornpipe.abc", 80.0, None, 21, percussion=_K, swing=0.62, collection="folk"),  # 2/4 swung
    Piece("ryansMammoth/OffSheGoesJig.abc", 92.0, None, 73, percussion=_K, collection="folk"),  # 12/8
    Piece("ryansMammoth/LochNaGarStrathspey.abc", 128.0, None, 21, percussion=_K, collection="folk"),  # 4/4
    Piece("oneills1850/1116-1135_ml.abc", 112.0, None, 73, number=1122, percussion=_K, tempo_curve="rit", collection="folk"),  # 9/8
    Piece("airdsAirs/book3.abc", 96.0, None, 24, number=553, percussion=_K, collection="folk"),  # 12/8
    Piece("essenFolksong/altdeu10.abc", 108.0, None, 73, number=6, percussion=_N, collection="folk"),  # 3/4
    Piece("ryansMammoth/BostonCaledonianClubsJig.abc", 132.0, None, 24, percussion=_N, collection="folk"),  # 6/8
    Piece("airdsAirs/book1.abc", 112.0, None, 40, number=94, percussion=_K, tempo_curve="drift", collection="folk"),  # 6/8
)

# two short pieces for the unit test (one 4/4, one 3/4)
TEST_PIECES: tuple[Piece, ...] = (Piece("bach/bwv10.7", 92.0, measures=10), Piece("bach/bwv11.6", 104.0, measures=12))


@dataclass
class RealSong:
    name: str
    wav_path: str
    sr: int
    bpm: float
    meter: int
    beats: list[float]  # seconds
    downbeats: list[float]  # seconds
    duration: float

    def truth(self) -> dict:
        """Truth dict in the corpus format (beats / downbeats / meter / tempo)."""
        return {"beats": self.beats, "downbeats": self.downbeats, "meter": self.meter, "tempo": self.bpm}


class RealMusicUnavailable(RuntimeError):
    """music21, fluidsynth or a GM soundfont is missing."""


def find_soundfont() -> str | None:
    return next((p for p in SOUNDFONTS if Path(p).exists()), None)


def fluidsynth_available() -> str | None:
    """None when fluidsynth + a soundfont are available, else the reason."""
    if shutil.which("fluidsynth") is None:
        return "the fluidsynth binary is not installed (apt-get install fluidsynth fluid-soundfont-gm)"
    if find_soundfont() is None:
        return f"no General MIDI soundfont found (looked for {', '.join(SOUNDFONTS)}; apt-get install fluid-soundfont-gm)"
    return None


# ----------------------------------------------------------------------------- score -> beats
def _score(piece: Piece):
    from music21 import bar, corpus, repeat, tempo

    score = corpus.parse(piece.corpus_path, number=piece.number) if piece.number is not None else corpus.parse(piece.corpus_path)
    if not hasattr(score, 'parts'):  # an ABC opus without a number parses to an Opus
        raise ValueError(f"{piece.corpus_path}: not a single score (an ABC opus needs Piece.number)")
    if piece.measures is not None:
        score = score.measures(0, piece.measures)
    # play straight through: no repeats (music21's MIDI writer would expand them, the beat truth would not)
    for m in score.recurse().getElementsByClass("Measure"):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = bar.Barline("regular")
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("regular")
    for r in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        r.activeSite.remove(r)
    for mm in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        mm.activeSite.remove(mm)
    return score


def score_beats(score, bpm: float) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(beat times, downbeat times, meter, quarter notes per beat) from the first part's measures.

    The bar phase is carried across measures, so a pickup (a short first measure), a bar
    split over two measure objects and a short final bar all come out right: a downbeat
    is a measure start where the phase is a whole bar.
    """
    part = score.parts[0]
    beats, downs = [], []
    meter, beat_q = 4, 1.0
    ts = None
    measures = list(part.getElementsByClass("Measure"))
    phase = None  # quarters since the last downbeat
    for m in measures:
        if m.timeSignature is not None:
            ts = m.timeSignature
        if ts is None:
            ts = m.getContextByClass("TimeSignature")
        meter = int(ts.beatCount)
        beat_q = float(ts.beatDuration.quarterLength)
        bar_q = float(ts.barDuration.quarterLength)
        o = float(m.getOffsetBySite(part))
        dur = float(m.duration.quarterLength)
        if phase is None:  # first measure: a short one is a pickup
            phase = (bar_q - dur) % bar_q if dur < bar_q - 1e-6 else 0.0
        if phase >= bar_q - 1e-6:
            phase = 0.0
        # beats: positions where (phase + x) is a multiple of beat_q, x in [0, dur)
        k0 = int(np.ceil(phase / beat_q - 1e-6))
        x = k0 * beat_q - phase
        while x < dur - 1e-6:
            beats.append(o + x)
            if abs(phase + x) < 1e-6 or abs((phase + x) % bar_q) < 1e-6:
                downs.append(o + x)
            x += beat_q
        phase += dur
    sec_per_q = 60.0 / (bpm * beat_q)
    return np.array(beats) * sec_per_q, np.array(downs) * sec_per_q, meter, beat_q


_KIT = {"kick": 36, "snare": 38, "hat": 42, "ride": 51}


def _percussion_events(piece: Piece, beat_ticks: list[int], down_ticks: set[int], tpq: int, beat_q: float,
                       meter: int) -> list[tuple[int, int, int, int]]:
    """(tick, on, pitch, velocity) on channel 10: a wood-block click per beat, or a light drum kit, or nothing."""
    ev: list[tuple[int, int, int, int]] = []
    if piece.percussion == "none":
        return ev
    if piece.percussion == "woodblock":
        for t in beat_ticks:
            pitch, vel = (76, 118) if t in down_ticks else (77, 72)  # GM 76 High Wood Block, 77 Low Wood Block
            ev += [(t, 1, pitch, vel), (t + tpq // 4, 0, pitch, 0)]
        return ev
    if piece.percussion != "kit":
        raise ValueError(f"{piece.corpus_path}: Piece.percussion must be woodblock, kit or none, not {piece.percussion!r}")
    compound = abs(beat_q - 1.5) < 1e-6
    sub = 3 if compound else 2  # hats on the eighths
    for k, t in enumerate(beat_ticks):
        nxt = beat_ticks[k + 1] if k + 1 < len(beat_ticks) else t + int(round(beat_q * tpq))
        pos = next((j for j in range(meter) if (k - j) >= 0 and beat_ticks[k - j] in down_ticks), None)
        if t in down_ticks or (meter == 4 and pos == 2):
            ev += [(t, 1, _KIT["kick"], 84), (t + tpq // 8, 0, _KIT["kick"], 0)]
        elif pos is not None and (meter in (2, 4) and pos in (1, 3) or meter == 3):
            ev += [(t, 1, _KIT["snare"], 58 if meter == 3 else 70), (t + tpq // 8, 0, _KIT["snare"], 0)]
        for j in range(sub):
            h = t + (nxt - t) * j // sub
            ev += [(h, 1, _KIT["hat"], 50 if j == 0 else 36), (h + tpq // 8, 0, _KIT["hat"], 0)]
    return ev


def _tempo_factors(piece: Piece, n: int) -> np.ndarray:
    """Per-beat tempo multipliers (the tempo map written into the MIDI file)."""
    x = np.arange(n) / max(n - 1, 1)
    if piece.tempo_curve == "constant":
        return np.ones(n)
    if piece.tempo_curve == "rit":  # ritardando over the last quarter of the piece, to 0.75x
        return np.where(x < 0.75, 1.0, 1.0 - (x - 0.75) / 0.25 * 0.25)
    if piece.tempo_curve == "accel":  # accelerando from 0.85x to 1.1x
        return 0.85 + 0.25 * x
    if piece.tempo_curve == "drift":  # slow expressive drift, +-6 % over ~16 beats
        return 1.0 + 0.06 * np.sin(2 * np.pi * np.arange(n) / 16.0)
    raise ValueError(f"{piece.corpus_path}: Piece.tempo_curve must be constant, rit, accel or drift, not {piece.tempo_curve!r}")


def _swing_tick(t: int, tpq: int, s: float) -> int:
    """Move the off-beat eighth of each quarter from 0.5 to ``s`` of the quarter (beats, on quarters, do not move)."""
    q, p = divmod(t, tpq)
    h = tpq / 2.0
    p2 = p * (2 * s) if p <= h else s * tpq + (p - h) * 2 * (1 - s)
    return int(q * tpq + round(p2))


def _retime_tracks(mf, tick_map, tempo_events: list[tuple[int, int]]) -> None:
    """Rewrite every track with absolute ticks: notes through ``tick_map``, old SET_TEMPO events replaced by ``tempo_events``
    ((tick, microseconds per quarter), written into the first track)."""
    from music21 import midi

    for ti, tr in enumerate(mf.tracks):
        now, items = 0, []
        for e in tr.events:
            if isinstance(e, midi.DeltaTime):
                now += int(e.time)
                continue
            if e.type == midi.MetaEvents.SET_TEMPO:
                continue
            items.append((now if e.type == midi.MetaEvents.END_OF_TRACK or not isinstance(e.type, midi.ChannelVoiceMessages)
                          else tick_map(now), e))
        if ti == 0:
            for t, us in tempo_events:
                me = midi.MidiEvent(tr, type=midi.MetaEvents.SET_TEMPO, channel=None)
                me.data = midi.putNumber(int(us), 3)
                items.append((t, me))
        end = [it for it in items if it[1].type == midi.MetaEvents.END_OF_TRACK]
        rest = sorted([it for it in items if it[1].type != midi.MetaEvents.END_OF_TRACK], key=lambda it: it[0])
        last = max([t for t, _ in rest], default=0)
        new, now = [], 0
        for t, e in rest + [(max(last, t), e) for t, e in end]:
            new.append(midi.DeltaTime(tr, time=t - now, channel=e.channel))
            new.append(e)
            now = t
        tr.events = new
        tr.updateEvents()


def _percussion_track(index: int, events: list[tuple[int, int, int, int]], last_tick: int):
    """A MIDI track on channel 10 with ``events``, then all-sound-off / all-notes-off on every channel at ``last_tick``."""
    from music21 import midi

    tr = midi.MidiTrack(index)
    events = sorted(events, key=lambda e: (e[0], e[1]))
    now = 0
    for t, on, pitch, vel in events:
        dt = midi.DeltaTime(tr, time=t - now, channel=10)
        tr.events.append(dt)
        ev = midi.MidiEvent(tr, type=midi.ChannelVoiceMessages.NOTE_ON if on else midi.ChannelVoiceMessages.NOTE_OFF, channel=10)
        ev.pitch = pitch
        ev.velocity = vel
        tr.events.append(ev)
        now = t
    # all sound off + all notes off on every channel after the last beat: a score with a note-on the writer never
    # closes (overlapping ornaments) would otherwise sustain forever and FluidSynth never finishes
    for k, ch in enumerate(range(1, 17)):
        for cc in (123, 120):
            tr.events.append(midi.DeltaTime(tr, time=max(last_tick - now, 0) if (k == 0 and cc == 123) else 0, channel=ch))
            ev = midi.MidiEvent(tr, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=ch)
            ev.parameter1, ev.parameter2 = cc, 0
            tr.events.append(ev)
    tr.events.append(midi.DeltaTime(tr, time=0, channel=None))
    end = midi.MidiEvent(tr, type=midi.MetaEvents.END_OF_TRACK, channel=None)
    end.data = b""
    tr.events.append(end)
    tr.updateEvents()
    return tr


def write_midi(piece: Piece, midi_path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Score (+ percussion, tempo map, swing) -> a MIDI file. Returns (beats s, downbeats s, meter) from the score.

    The tempo map holds one SET_TEMPO event per beat (``piece.tempo_curve``), so the beat times are exact:
    beat k sounds at the sum of the previous beats' durations. Swing moves notes inside each quarter only,
    so beats (always on quarters in simple meters) keep their times; it is not applied in compound meters.
    """
    from music21 import instrument, midi, tempo

    score = _score(piece)
    beats, downs, meter, beat_q = score_beats(score, piece.bpm)
    if len(beats) < 8 or np.ptp(np.diff(beats)) > 1e-6 or meter not in (2, 3, 4):
        raise ValueError(f"{piece.corpus_path}: irregular beat grid from the score (meter {meter}); choose another piece")
    quarter_bpm = piece.bpm * beat_q
    score.parts[0].insert(0, tempo.MetronomeMark(number=quarter_bpm, referent=1.0))
    for p in score.parts:
        for inst in list(p.recurse().getElementsByClass(instrument.Instrument)):
            inst.activeSite.remove(inst)
        ins = instrument.Instrument()
        ins.midiProgram = piece.program
        p.insert(0, ins)
    mf = midi.translate.streamToMidiFile(score, addStartDelay=False)
    tpq = mf.ticksPerQuarterNote
    sec_per_tick = 60.0 / (quarter_bpm * tpq)
    beat_ticks = [int(round(t / sec_per_tick)) for t in beats]
    down_ticks = {int(round(t / sec_per_tick)) for t in downs}
    # tempo map: beat k lasts 60 / (bpm * f_k) s; the stretch before the first beat plays at f_0
    f = _tempo_factors(piece, len(beats))
    tempo_events = [(0, 60e6 / (quarter_bpm * f[0]))] + [(t, 60e6 / (quarter_bpm * fk)) for t, fk in zip(beat_ticks, f)]
    compound = abs(beat_q - 1.5) < 1e-6
    s = float(piece.swing)
    tick_map = (lambda t: _swing_tick(t, tpq, s)) if (abs(s - 0.5) > 1e-6 and not compound) else (lambda t: t)
    _retime_tracks(mf, tick_map, tempo_events)
    last = (max(beat_ticks) if beat_ticks else 0) + 4 * tpq
    mf.tracks.append(_percussion_track(len(mf.tracks), _percussion_events(piece, beat_ticks, down_ticks, tpq, beat_q, meter), last))
    midi_path.parent.mkdir(parents=True, exist_ok=True)
    mf.open(str(midi_path), "wb")
    mf.write()
    mf.close()
    period = 60.0 / (piece.bpm * f)  # seconds per beat
    t0 = beats[0] / f[0]
    bt = t0 + np.concatenate([[0.0], np.cumsum(period[:-1])])
    idx = np.searchsorted(beats, downs - 1e-9)
    return bt, bt[idx], meter


def render_midi(midi_path: Path, wav_path: Path, sr: int = 44100, gain: float = 0.6, timeout: float = 300.0) -> None:
    why = fluidsynth_available()
    if why:
        raise RealMusicUnavailable(why)
    cmd = ["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(sr), "-F", str(wav_path), find_soundfont(), str(midi_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 or not wav_path.exists():
        raise RealMusicUnavailable(f"fluidsynth failed ({res.returncode}): {res.stderr.strip()[:500]}")


RENDER_VERSION = 2  # bump when the MIDI writing / rendering changes: cached renders with another version are redone


@dataclass
class RenderFailure:
    piece: str
    error: str


def piece_key(piece: Piece, sr: int) -> str:
    """Content key of a render: the piece spec, the sample rate, the render version and the soundfont's size."""
    import hashlib

    sf2 = find_soundfont() or ""
    spec = json.dumps({**asdict(piece), "sr": sr, "v": RENDER_VERSION, "sf2": [sf2, Path(sf2).stat().st_size if sf2 else 0]},
                      sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_real_music(out_dir: str | Path, pieces: tuple[Piece, ...] | list[Piece] = DEFAULT_PIECES, sr: int = 44100,
                     failures: list | None = None) -> list[RealSong]:
    """Render each piece to ``out_dir/<name>.wav`` (+ ``.mid`` and ``.truth.json``); returns the songs with truth.

    Renders are cached by content: a piece whose ``.truth.json`` carries the same ``key`` (piece spec, sample
    rate, ``RENDER_VERSION``, soundfont) is not rendered again. With ``failures`` (a list), a piece that fails
    (parse error, irregular beat grid) is appended there as a ``RenderFailure`` and the others go on; without
    it the error is raised.
    """
    why = fluidsynth_available()
    if why:
        raise RealMusicUnavailable(why)
    try:
        import music21  # noqa: F401
    except ImportError as exc:
        raise RealMusicUnavailable("the music21 package is not installed (pip install music21)") from exc
    import soundfile as sf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    songs = []
    for piece in pieces:
        name = piece.name
        mid, wav, tj = out_dir / f"{name}.mid", out_dir / f"{name}.wav", out_dir / f"{name}.truth.json"
        key = piece_key(piece, sr)
        if tj.exists() and wav.exists():
            d = json.loads(tj.read_text())
            if d.get("key") == key:
                d.pop("key")
                d.pop("group", None)
                songs.append(RealSong(**{**d, "wav_path": str(wav)}))
                continue
        try:
            beats, downs, meter = write_midi(piece, mid)
            render_midi(mid, wav, sr, timeout=60.0 + 2.0 * float(beats[-1]))
        except RealMusicUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 -- one bad piece is reported, never stops the others
            if failures is None:
                raise
            failures.append(RenderFailure(name, f"{type(exc).__name__}: {exc}"[:300]))
            continue
        duration = float(sf.info(str(wav)).duration)
        song = RealSong(name, str(wav), sr, piece.bpm, meter, [float(t) for t in beats], [float(t) for t in downs], duration)
        tj.write_text(json.dumps({**asdict(song), "key": key, "group": piece.group}, indent=1))
        songs.append(song)
    return songs


def evaluate_real_music(songs: list[RealSong], cfg, cache_dir: str | Path) -> list[dict]:
    """Run the front end on each rendered piece; beat / downbeat F-measure, meter, tempo per piece."""
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.stems import StemCache
    from beatedit.audio.truth import song_beat_metrics

    rows = []
    cache = StemCache(cache_dir)
    for s in songs:
        song = analyse_song(s.wav_path, cfg, cache)
        m = song_beat_metrics(song, s.truth())
        rows.append({"piece": s.name, "meter": s.meter, "est_meter": song.meter, "bpm": s.bpm, "est_tempo": round(song.tempo, 2),
                     **{k: round(v, 4) for k, v in m.items() if k in ("beat_f_measure", "downbeat_f_measure", "meter_accuracy", "tempo_accuracy")}})
    return rows


def amlt(estimated: np.ndarray, reference: np.ndarray) -> float:
    """mir_eval's AMLt (allowed metrical levels, total): continuity that forgives double / half tempo and off-beat."""
    import mir_eval

    est, ref = np.sort(np.asarray(estimated, float)), np.sort(np.asarray(reference, float))
    if len(est) < 2 or len(ref) < 2:
        return 0.0
    return float(mir_eval.beat.continuity(ref, est)[3])


def librosa_beat_times(y: np.ndarray, sr: int) -> np.ndarray:
    """The peer: librosa's plain ``beat_track`` with its defaults, in seconds."""
    import librosa

    _, bt = librosa.beat.beat_track(y=np.asarray(y, dtype=np.float32), sr=sr, units="time")
    return np.asarray(bt, dtype=np.float64)


def validation_row(song: RealSong, group: str, beat_times: np.ndarray, bar_starts: np.ndarray, meter: int, tempo: float,
                   peer_beats: np.ndarray) -> dict:
    """One piece's figures: ours (beat / downbeat F, meter, AMLt, tempo) and the peer's beat F / AMLt."""
    from beatedit.audio.truth import beat_f_measure, downbeat_f_measure

    bt = np.asarray(beat_times, dtype=np.float64)
    ref = np.asarray(song.beats, dtype=np.float64)
    return {"piece": song.name, "group": group, "meter": int(song.meter), "est_meter": int(meter), "bpm": float(song.bpm),
            "est_tempo": round(float(tempo), 2),
            "beat_f_measure": round(beat_f_measure(bt, ref), 4),
            "downbeat_f_measure": round(downbeat_f_measure(bt[np.asarray(bar_starts, dtype=np.int64)], song.downbeats), 4),
            "meter_accuracy": float(int(meter) == int(song.meter)), "amlt": round(amlt(bt, ref), 4),
            "librosa_beat_f_measure": round(beat_f_measure(peer_beats, ref), 4), "librosa_amlt": round(amlt(peer_beats, ref), 4)}


def evaluate_validation(songs: list[RealSong], groups: dict[str, str], cfg, cache_dir: str | Path,
                        progress=None) -> tuple[list[dict], dict]:
    """Our front end (``analyse_song``) and librosa's ``beat_track`` on each rendered piece -> (rows, timings).

    ``audio.min_beats`` is lowered to 8 here: a short folk tune is a tracking test, not a quarantine case.
    Timings: seconds of audio, our seconds (frames + beats, stems excluded as in ``timings_s``) and the peer's.
    """
    import dataclasses
    import time

    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.io import load_mono
    from beatedit.audio.stems import StemCache

    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, min_beats=8))
    cache = StemCache(cache_dir)
    rows, tim = [], {"audio_s": 0.0, "ours_s": 0.0, "ours_total_s": 0.0, "librosa_s": 0.0}
    for i, s in enumerate(songs):
        song = analyse_song(s.wav_path, cfg, cache)
        t = song.extra["timings_s"]
        tim["ours_s"] += float(t.get("frames", 0.0)) + float(t.get("beats", 0.0))
        tim["ours_total_s"] += float(t.get("total", 0.0))
        y = load_mono(s.wav_path, cfg.audio.analysis_sr, silence_dbfs=None)
        t0 = time.perf_counter()
        peer = librosa_beat_times(y, cfg.audio.analysis_sr)
        tim["librosa_s"] += time.perf_counter() - t0
        tim["audio_s"] += s.duration
        rows.append(validation_row(s, groups.get(s.name, "other"), song.beat_times, song.bar_starts, song.meter, song.tempo, peer))
        if progress:
            progress(i + 1, len(songs), rows[-1])
    return rows, {k: round(v, 3) for k, v in tim.items()}


def halves_consistency(first: np.ndarray, second: np.ndarray, tol: float = 0.04) -> dict:
    """Checks without ground truth on a real recording: beats tracked separately on an excerpt from its first and
    its second half. ``tempo_agree``: the two median tempi within ``tol``; ``octave_error``: they differ by a factor
    2 or 3 (or 1/2, 1/3) within ``tol``; ``stability``: share of inter-beat intervals within 10 % of their median
    (tempo stability / beat-phase consistency: a phase slip or a dropped beat breaks it), mean of the halves."""
    def ibi(bt):
        d = np.diff(np.asarray(bt, dtype=np.float64))
        return d if len(d) else np.array([np.nan])

    a, b = ibi(first), ibi(second)
    ta, tb = 60.0 / np.nanmedian(a), 60.0 / np.nanmedian(b)
    r = max(ta, tb) / max(min(ta, tb), 1e-9)
    stab = [float(np.mean(np.abs(x / np.nanmedian(x) - 1.0) <= 0.10)) for x in (a, b)]
    return {"tempo_first": round(float(ta), 2), "tempo_second": round(float(tb), 2), "tempo_agree": float(abs(r - 1) <= tol),
            "octave_error": float(any(abs(r / k - 1) <= tol for k in (2, 3))), "stability": round(float(np.mean(stab)), 4)}


VALIDATION_KEYS = ("beat_f_measure", "downbeat_f_measure", "meter_accuracy", "amlt", "librosa_beat_f_measure", "librosa_amlt")


def summarise_validation(rows: list[dict]) -> dict:
    """``realmusic_<key>`` means over all pieces and ``realmusic_<group>_<key>`` per collection, + counts."""
    out: dict = {"realmusic_pieces": len(rows)}
    if not rows:
        return out
    for k in VALIDATION_KEYS:
        out[f"realmusic_{k}"] = round(float(np.mean([r[k] for r in rows])), 4)
    for g in sorted({r["group"] for r in rows}):
        sub = [r for r in rows if r["group"] == g]
        out[f"realmusic_{g}_pieces"] = len(sub)
        for k in VALIDATION_KEYS:
            out[f"realmusic_{g}_{k}"] = round(float(np.mean([r[k] for r in sub])), 4)
    return out


if __name__ == "__main__":  # python -m beatedit.corpus.realmusic OUT_DIR : render + evaluate the default pieces
    import sys

    from beatedit.config import Config

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out/realmusic")
    rows = evaluate_real_music(build_real_music(out), Config(), out / "stems")
    for r in rows:
        print(r)
    print("mean beat F %.4f  mean downbeat F %.4f" % (np.mean([r["beat_f_measure"] for r in rows]), np.mean([r["downbeat_f_measure"] for r in rows])))
