"""Files mypy --strict checks: right uses pass with the types asserted; ``bad/`` holds uses it must reject."""
