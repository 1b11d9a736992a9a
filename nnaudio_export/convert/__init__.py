"""Converters: turn what users already have (a Hugging Face feature extractor, an nnAudio
layer) into this package's frontends, built as specs through the builder's stages."""
