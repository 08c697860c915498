"""Where channel state lives and how events reach subscribers: local or Redis."""
