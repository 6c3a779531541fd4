"""Built-in plugins, registered exactly like third-party ones.

``BUILTIN_PLUGINS`` lists their modules, in registration order; the core's plugin manager registers
them before the entry points, so it names no format, locator, engine or catalogue itself.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "skyplug.plugins.formats",
    "skyplug.plugins.locators.local",
    "skyplug.plugins.locators.s3",
    "skyplug.plugins.locators.multisite",
    "skyplug.plugins.locators.http",
    "skyplug.plugins.locators.fsspec",
    "skyplug.plugins.engines.local",
    "skyplug.plugins.engines.lithops",
    "skyplug.plugins.engines.dask",
    "skyplug.plugins.engines.slurm",
    "skyplug.catalog.plugin",
    "skyplug.plugins.provenance",
    "skyplug.plugins.publishers.sparql",
    "skyplug.plugins.publishers.nuvla",
)
