"""Built-in civicbot plugins, one package each (imported as ``civicbot_plugins``)."""
