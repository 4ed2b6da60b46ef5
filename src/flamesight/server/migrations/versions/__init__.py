"""One module per schema revision, applied in order at server start."""
