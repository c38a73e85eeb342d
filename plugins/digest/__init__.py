"""The weekly digest: one summary per room, at a day and time the room chooses, built from every
enabled plugin's ``digest_section`` and the room's week in numbers; personal digests by DM for
people who subscribe, and a space-wide digest on request."""
