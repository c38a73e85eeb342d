"""Every resident can see, and erase, what the bot stores about them."""
