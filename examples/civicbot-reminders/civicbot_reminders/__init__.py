"""An example civicbot plugin: reminders a room sets for itself (``!remind``)."""
