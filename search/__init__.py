"""search: turns a sweep file into a Ray Tune experiment (Optuna TPE + ASHA) and every
trial into Parquet rows. Knows nothing of spectrogram maths: it drives ser_core."""
