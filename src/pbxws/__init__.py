"""pbxws: a Pusher-protocol WebSocket server, drop-in for Soketi."""

__version__ = "0.1.0"
