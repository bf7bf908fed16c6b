"""Benchmark presets shipped with the package (``coreselect bench --preset NAME``): TOML grids read by
:mod:`coreselect.experiments.grid`. Copy one as the start of your own benchmark file."""
