"""Seed 004's Phoenix Channels socket: wire protocol (`protocol`), channels (`topics`), one connection (`session`)."""
