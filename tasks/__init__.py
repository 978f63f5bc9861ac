"""Tasks: datasets, prompts and rewards (`tasks.registry.get_task`)."""
