"""Engine plugins: one module per processing engine."""
