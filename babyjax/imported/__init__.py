"""Checkpoint series trained elsewhere (Hugging Face folders and git repositories), read into babyjax."""
