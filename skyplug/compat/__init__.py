"""Drop-in shapes of other tools' APIs, backed by skyplug (``skyplug.compat.dataplug``)."""
