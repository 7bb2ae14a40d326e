"""authsvc: an OAuth2/JWT authentication gateway for FastAPI services."""

__version__ = "0.1.0"
