"""MRI water/fat (Dixon) domain: NIfTI/DICOM/MHA/NRRD volumes in RAS+ (``io.py``), nnU-Net raw-layout slice data sets
(``dataset.py``), the reader, writer and evaluation of the core pipeline (``reader.py``, ``writer.py``,
``scorers.py``), fat fraction, instances, a synthetic phantom and per-label metrics in millimetres."""
