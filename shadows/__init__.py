"""Device shadows: AWS IoT's classic and named shadows, persisted in the registry's database."""
