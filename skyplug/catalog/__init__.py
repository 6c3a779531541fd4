"""skyplug's catalogue: ObsCore 1.1 + radio extension in SQLite or PostgreSQL/pgSphere, queried with
ADQL locally or through a TAP service (``skyplug catalog ...``). Modules import lazily."""
