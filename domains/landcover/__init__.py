"""Land-cover domain: multi-band GeoTIFF scenes + label rasters (rasterio, windowed reads). ``dataset.py`` (the
dataset builder), ``reader.py`` / ``writer.py`` (predict: GeoTIFF in, georeferenced class rasters, areas, previews
and building polygons out, streamed in bounded memory), ``scorers.py`` (evaluate on the held-out rectangles),
``synthetic.py`` (demo scenes). Config: ``conf/domain/landcover.yaml``."""
