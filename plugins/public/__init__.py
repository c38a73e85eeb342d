"""``!web``, ``!calendar`` and ``!noticeboard``: the room's public page, a person's calendar
feed and the printable noticeboard, through the engine's public pages (``ctx.public``)."""
