"""The HTTP API front: seed 004's REST service over the shared engine (see http_api.app)."""
