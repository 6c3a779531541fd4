"""Format plugins: one module (or package) per format."""
