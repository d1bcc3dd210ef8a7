"""Tune callbacks on the driver that record what trials report: the Parquet recorder
(search.recording.recorder) and the experiment trackers (MLflow, W&B, TensorBoard)."""
