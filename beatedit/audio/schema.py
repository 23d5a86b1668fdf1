"""The beat-feature schema: the one place that defines the 125 feature columns.

Every feature file and every checkpoint stores ``SCHEMA_VERSION``; loading either
against another version is an error (``SchemaMismatchError``). Column order is the
order of ``COLUMNS`` below -- never dict order. Change a column and you must bump
the version.

All columns are beat-synchronous: the value summarises the audio between beat ``i``
and beat ``i + 1`` (the last beat ends at the song's end or one median inter-beat
interval later, whichever comes first).
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = "beatfeat-v1"
N_FEATURES = 125


@dataclass(frozen=True)
class Column:
    name: str
    source: str  # which signal it is computed from: mix | mix_harmonic | drums | bass | other | grid
    unit: str
    description: str


def _block(prefix: str, n: int, source: str, unit: str, description: str) -> list[Column]:
    return [Column(f"{prefix}_{k}", source, unit, f"{description} (index {k})") for k in range(n)]


_PITCH = ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")

COLUMNS: tuple[Column, ...] = tuple(
    # --- timbre (mix) -------------------------------------------------------
    _block("mfcc", 20, "mix", "dB-cepstrum", "MFCC mean over the beat")
    + _block("logmel", 24, "mix", "dB", "log-mel band energy (24 bands, 30 Hz - 8 kHz) mean over the beat")
    # --- harmony (harmonic part of the mix) ----------------------------------
    + [Column(f"chroma_{p}", "mix_harmonic", "0..1 (max-normalised)", f"chroma energy of pitch class {p}") for p in _PITCH]
    + _block("tonnetz", 6, "mix_harmonic", "unitless", "tonal centroid coordinate")
    # --- spectral shape (mix) -----------------------------------------------
    + [
        Column("spectral_centroid", "mix", "kHz", "spectral centroid mean"),
        Column("spectral_bandwidth", "mix", "kHz", "spectral bandwidth mean"),
        Column("spectral_rolloff", "mix", "kHz", "85% spectral roll-off mean"),
        Column("spectral_flatness", "mix", "0..1", "spectral flatness mean"),
        Column("zero_crossing_rate", "mix", "crossings/sample", "zero-crossing rate mean"),
    ]
    + _block("spectral_contrast", 7, "mix", "dB", "spectral contrast per octave band")
    # --- loudness and onsets (mix) -------------------------------------------
    + [
        Column("rms", "mix", "linear amplitude", "RMS mean over the beat"),
        Column("rms_max", "mix", "linear amplitude", "RMS max over the beat"),
        Column("rms_db", "mix", "dBFS", "RMS mean in dB (floor -80)"),
        Column("rms_delta_db", "mix", "dB", "rms_db minus previous beat's rms_db (0 on the first beat)"),
        Column("onset_strength", "mix", "unitless (librosa onset envelope)", "onset strength mean"),
        Column("onset_strength_max", "mix", "unitless", "onset strength max"),
    ]
    + _block("onset_sub", 4, "mix", "unitless", "onset strength in the k-th quarter of the beat")
    + _block("rms_sub", 4, "mix", "linear amplitude", "RMS in the k-th quarter of the beat")
    # --- stems ----------------------------------------------------------------
    + [
        Column(f"{stem}_{what}", stem, unit, f"{desc} of the {stem} stem")
        for stem in ("drums", "bass", "other")
        for what, unit, desc in (
            ("rms", "linear amplitude", "RMS mean"),
            ("rms_db", "dBFS", "RMS mean in dB (floor -80)"),
            ("onset", "unitless", "onset strength mean"),
            ("centroid", "kHz", "spectral centroid mean"),
            ("share", "0..1", "energy share of the mix's summed stem energy"),
        )
    ]
    # --- grid: meter, phrase and section position ------------------------------
    + [
        Column("beat_in_bar", "grid", "beats (0..meter-1)", "position of the beat in its bar"),
        Column("beat_in_bar_sin", "grid", "unitless", "sin(2 pi beat_in_bar / meter)"),
        Column("beat_in_bar_cos", "grid", "unitless", "cos(2 pi beat_in_bar / meter)"),
        Column("meter", "grid", "beats per bar", "meter of the song"),
        Column("is_downbeat", "grid", "0/1", "beat is a bar start"),
        Column("bar_in_phrase", "grid", "bars", "index of the bar within its phrase"),
        Column("phrase_position", "grid", "0..1", "fraction of the current phrase elapsed at this beat"),
        Column("is_phrase_start", "grid", "0/1", "beat starts a phrase"),
        Column("phrase_length_bars", "grid", "bars", "length of the current phrase"),
        Column("is_section_start", "grid", "0/1", "beat starts a section"),
        Column("section_position", "grid", "0..1", "fraction of the current section elapsed"),
        Column("section_index_norm", "grid", "0..1", "section index / number of sections"),
        Column("section_energy_rank", "grid", "0..1", "rank of the section's mean RMS among the song's sections"),
        Column("song_position", "grid", "0..1", "beat time / song duration"),
    ]
    # --- tempo ---------------------------------------------------------------
    + [
        Column("local_tempo", "grid", "BPM", "60 / inter-beat interval at this beat"),
        Column("tempo_deviation", "grid", "BPM", "local_tempo minus the song's global tempo"),
        Column("beat_duration", "grid", "s", "duration of this beat"),
    ]
    # --- novelty ----------------------------------------------------------------
    + [
        Column("novelty_mfcc", "mix", "unitless (cosine distance)", "MFCC novelty vs previous beat"),
        Column("novelty_chroma", "mix_harmonic", "unitless (cosine distance)", "chroma novelty vs previous beat"),
        Column("novelty_checkerboard", "mix", "unitless", "Foote checkerboard novelty on the beat SSM"),
        Column("self_similarity_bar", "mix", "-1..1", "cosine similarity to the beat one bar earlier"),
        Column("self_similarity_phrase", "mix", "-1..1", "cosine similarity to the beat one phrase earlier"),
    ]
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
COLUMN_INDEX: dict[str, int] = {name: i for i, name in enumerate(COLUMN_NAMES)}


class SchemaMismatchError(ValueError):
    """A feature file or checkpoint was produced under another feature schema."""


def check_schema(found: str, where: str) -> None:
    """Refuse anything built under another schema, naming the file."""
    if found != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"{where}: feature schema {found!r} does not match this code's {SCHEMA_VERSION!r}; "
            "re-run the features stage (or use a checkpoint trained on this schema)"
        )


def col(name: str) -> int:
    """Column index by name (KeyError names the unknown column)."""
    try:
        return COLUMN_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown feature column {name!r}") from None


if len(COLUMNS) != N_FEATURES or len(set(COLUMN_NAMES)) != N_FEATURES:
    raise AssertionError(f"feature schema has {len(COLUMNS)} columns ({len(set(COLUMN_NAMES))} unique), expected {N_FEATURES}")
