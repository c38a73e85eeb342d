"""Every resident can see, and erase, what the bot stores about them."""

from civicbot_plugins.privacy.plugin import PrivacyPlugin

PLUGIN = PrivacyPlugin
