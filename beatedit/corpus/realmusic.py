"""Real-music test data with exact beat ground truth: music21 corpus -> MIDI -> FluidSynth.

Pieces nobody here wrote (Bach chorales and friends from music21's bundled corpus) are
rendered at a fixed tempo with a General MIDI soundfont. A percussion track (channel 10)
plays a wood block on every beat -- high wood block, loud, on downbeats; low wood block,
softer, elsewhere -- so the beat ground truth is sharp and audible. Beat and downbeat
times come from the score (measure offsets, time signature, pickup bars), not from the
audio. Nothing rendered is committed: everything goes to the folder you pass.

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
    bpm: float  # tempo in beats per minute (beat = the time signature's beat unit)
    measures: int | None = None  # render only the first N measures (None = whole piece)
    program: int = 0  # GM program for the melodic parts (0 piano, 48 strings, 19 organ ...)


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

    score = corpus.parse(piece.corpus_path)
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


def _percussion_track(index: int, beat_ticks: list[int], down_ticks: set[int], tpq_len: int):
    """A MIDI track on channel 10: wood block on every beat, accented high wood block on downbeats."""
    from music21 import midi

    tr = midi.MidiTrack(index)
    events = []
    for t in beat_ticks:
        pitch, vel = (76, 118) if t in down_ticks else (77, 72)  # GM 76 High Wood Block, 77 Low Wood Block
        events.append((t, 1, pitch, vel))
        events.append((t + tpq_len, 0, pitch, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for t, on, pitch, vel in events:
        dt = midi.DeltaTime(tr, time=t - now, channel=10)
        tr.events.append(dt)
        ev = midi.MidiEvent(tr, type=midi.ChannelVoiceMessages.NOTE_ON if on else midi.ChannelVoiceMessages.NOTE_OFF, channel=10)
        ev.pitch = pitch
        ev.velocity = vel
        tr.events.append(ev)
        now = t
    # all sound off + all notes off on every channel one beat after the last beat: a score with a note-on the
    # writer never closes (overlapping ornaments) would otherwise sustain forever and FluidSynth never finishes
    last = (max(beat_ticks) if beat_ticks else 0) + 4 * tpq_len
    for k, ch in enumerate(range(1, 17)):
        for cc in (123, 120):
            tr.events.append(midi.DeltaTime(tr, time=(last - now) if (k == 0 and cc == 123) else 0, channel=ch))
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
    """Score + percussion track -> a MIDI file at ``piece.bpm``. Returns (beats s, downbeats s, meter)."""
    from music21 import instrument, midi, tempo

    score = _score(piece)
    beats, downs, meter, beat_q = score_beats(score, piece.bpm)
    if len(beats) < 8 or np.ptp(np.diff(beats)) > 1e-6 or meter not in (3, 4):
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
    mf.tracks.append(_percussion_track(len(mf.tracks), beat_ticks, down_ticks, tpq // 4))
    midi_path.parent.mkdir(parents=True, exist_ok=True)
    mf.open(str(midi_path), "wb")
    mf.write()
    mf.close()
    return beats, downs, meter


def render_midi(midi_path: Path, wav_path: Path, sr: int = 44100, gain: float = 0.6, timeout: float = 300.0) -> None:
    why = fluidsynth_available()
    if why:
        raise RealMusicUnavailable(why)
    cmd = ["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(sr), "-F", str(wav_path), find_soundfont(), str(midi_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 or not wav_path.exists():
        raise RealMusicUnavailable(f"fluidsynth failed ({res.returncode}): {res.stderr.strip()[:500]}")


def build_real_music(out_dir: str | Path, pieces: tuple[Piece, ...] | list[Piece] = DEFAULT_PIECES, sr: int = 44100) -> list[RealSong]:
    """Render each piece to ``out_dir/<name>.wav`` (+ ``.mid`` and ``.truth.json``); returns the songs with truth."""
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
        name = piece.corpus_path.rsplit(".", 1)[0].replace("/", "_").replace(".", "_") if piece.corpus_path.endswith((".xml", ".krn", ".mxl")) \
            else piece.corpus_path.replace("/", "_").replace(".", "_")
        name = name + (f"_m{piece.measures}" if piece.measures else "")
        mid, wav = out_dir / f"{name}.mid", out_dir / f"{name}.wav"
        beats, downs, meter = write_midi(piece, mid)
        render_midi(mid, wav, sr, timeout=60.0 + 2.0 * float(beats[-1]))
        duration = float(sf.info(str(wav)).duration)
        song = RealSong(name, str(wav), sr, piece.bpm, meter, [float(t) for t in beats], [float(t) for t in downs], duration)
        (out_dir / f"{name}.truth.json").write_text(json.dumps(asdict(song), indent=1))
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


if __name__ == "__main__":  # python -m beatedit.corpus.realmusic OUT_DIR : render + evaluate the default pieces
    import sys

    from beatedit.config import Config

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out/realmusic")
    rows = evaluate_real_music(build_real_music(out), Config(), out / "stems")
    for r in rows:
        print(r)
    print("mean beat F %.4f  mean downbeat F %.4f" % (np.mean([r["beat_f_measure"] for r in rows]), np.mean([r["downbeat_f_measure"] for r in rows])))
