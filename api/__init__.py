"""FastAPI draft-report service (installed as `reportgen.api`)."""
