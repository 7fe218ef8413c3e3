"""Speech recognition: synthesised corpus, log-mel features, a CTC model, decoders, training, serving."""
