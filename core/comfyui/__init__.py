"""Talking to ComfyUI servers: HTTP client, websocket listener and wire types."""
