"""The application: the command line, wiring and a clean stop, the demo, backups and restores."""
