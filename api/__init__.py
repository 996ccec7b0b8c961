"""The HTTP API (FastAPI): validates, stores and enqueues; reads jobs back."""
