"""Publisher plugins: one module per catalogue or store."""
