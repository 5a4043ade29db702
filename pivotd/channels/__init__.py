"""The Phoenix Channels socket: wire protocol (`protocol`), channels (`topics`), one connection (`session`)."""
