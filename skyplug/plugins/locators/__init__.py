"""Locator plugins: one module per site type."""
