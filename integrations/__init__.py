"""Platform integrations: one package per platform, each with crypto, parse, client, webhook."""
