"""The application: the config file, the command line, wiring and shutdown, the demo, backups,
logs."""
