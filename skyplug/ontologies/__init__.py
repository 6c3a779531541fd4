"""skyplug's RDF vocabulary (``skyplug.ttl``) and the SHACL shapes of published graphs (``shapes.ttl``).

Package data only: :mod:`skyplug.plugins.publishers.rdf` reads them with ``importlib.resources``.
"""
