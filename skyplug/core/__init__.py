"""The core: plugin manager, URIs, configuration, sources, index cache and partitions.

Nothing here knows a format, a site type, an engine or a catalogue.
"""
