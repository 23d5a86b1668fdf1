"""Audio front end: decoding (io), stem separation (stems), beat/downbeat/meter tracking (beats),
the 125-column beat feature schema (schema) and its extraction (features), ground truth (truth),
and the per-song analysis file every later stage reads (song)."""
