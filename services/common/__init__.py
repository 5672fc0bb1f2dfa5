"""Building blocks shared by GemHub's hub services: app base, hub auth, DB, errors, audit,
metrics and OpenAPI."""
