"""Meetings: find a time, fix it, put it in everyone's calendar, remind people, record minutes."""
