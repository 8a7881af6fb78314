"""Fluorescence nuclei (the U-Net paper's cell-tracking case): ``data.py`` (TIFFs, pairing, synthetic nuclei, datasets),
``io.py`` (reader, CTC-named instance masks), ``metrics.py`` (CTC SEG and DET)."""
