"""Floor 3: reports of a comparison, metric tables (CSV, JSON, Markdown, console) and image grids."""

from pansharp_jax.report.grid import grid_pixel_size, save_grid
from pansharp_jax.report.tables import FR_METRICS, HIGHER_IS_BETTER, RR_METRICS, MetricRow, MetricTable, print_table

__all__ = [
    "MetricRow",
    "MetricTable",
    "print_table",
    "save_grid",
    "grid_pixel_size",
    "RR_METRICS",
    "FR_METRICS",
    "HIGHER_IS_BETTER",
]
