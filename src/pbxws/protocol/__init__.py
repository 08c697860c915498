"""The Pusher Channels protocol, without I/O.

This package turns bytes into typed values and back: client messages, server
frames, channel-name rules, HMAC signatures and error codes. It never imports
asyncio, aiohttp, redis, prometheus or structlog; the ``ws`` and ``http_api``
layers do the I/O and ask this package what to answer.
"""
