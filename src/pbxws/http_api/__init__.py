"""The Pusher HTTP API and the health routes on the main port."""
