"""Fluorescence microscopy nuclei (the U-Net paper's cell-tracking case): TIFF images in the Cell Tracking Challenge
layout or ``images/`` + ``masks/`` folders; nucleus foreground + the core's border channel; CTC instance masks, overlays
and per-object CSVs out; the CTC SEG and DET measures. ``data.py`` (reading, pairing, synthetic nuclei, datasets),
``io.py`` (reader, writer), ``metrics.py`` (SEG, DET, evaluation), ``benchmark.py`` (StarDist's image vs Otsu)."""
