"""Mutual aid: offers and needs matched in the room, private needs by DM, consent at every step."""
