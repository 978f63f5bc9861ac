"""The bottom layer shared by `experience_store`, `tasks` and `tfgrpo`: domain errors, the chat seam's
types, the Jinja loader and the tfgrpo home folder. It imports nothing of the three."""
