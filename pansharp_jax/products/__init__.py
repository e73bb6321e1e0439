"""Whole scenes of any size: windowed GeoTIFF reading, tiled fusion and Cloud-Optimized GeoTIFF products."""
