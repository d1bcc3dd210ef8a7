"""ser_core: the science of one SER trial — corpora, audio preparation, spectrogram
frontends, models, loss families, training and metrics. Knows nothing of Ray."""
