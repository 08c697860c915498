"""Pusher webhooks: signed, batched, retried, once per cluster-wide transition.

:mod:`.events` encodes events and requests (pure), :mod:`.store` decides what
is sent, delayed or suppressed and queues deliveries (in memory on one node,
:mod:`.redis_store` in Redis for a cluster), :mod:`.service` is the node's
sender. The server builds one :class:`Webhooks` per node.
"""

from .service import Webhooks

__all__ = ["Webhooks"]
