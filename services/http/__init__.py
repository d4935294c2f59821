"""The HTTP kit every ``endpoints.py`` uses: typed dependencies (the request's session, the
process runtime, the caller's role), the error handlers and body helpers. Endpoints import it;
domain services never do (a service knows nothing of HTTP)."""
