"""Where facts come from: the library system's exports (CSV files)."""
