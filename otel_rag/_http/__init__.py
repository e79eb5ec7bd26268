"""HTTP server telemetry: the ASGI middleware behind instrument_app."""
