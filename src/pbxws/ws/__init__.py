"""The WebSocket side: connections, the message dispatcher and liveness."""
