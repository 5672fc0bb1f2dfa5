"""GemHub hub services (each a HubOAuth-authenticated tornado application)."""
