"""The public face of civicbot: each opted-in room's web page, calendar feeds and printable
noticeboard, served read-only from inside the bot process (off unless ``[web] listen`` and
``public_url`` are set).

Content comes only through the ``public_section`` / ``personal_calendar`` plugin hooks
(:mod:`civicbot.core.public`); this package never imports a plugin, and no plugin imports it.
"""

from civicbot.web.site import PublicSite

__all__ = ["PublicSite"]
