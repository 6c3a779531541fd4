"""Contract tests of the Nuvla stand-in (tools/nuvla_standin.py)."""
