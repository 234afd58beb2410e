"""Agents' JSON event streams (claude, codex, opencode, gemini) read into one event model."""
