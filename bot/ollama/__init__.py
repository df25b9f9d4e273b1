"""Everything that talks to Ollama: `protocol` (what the bot needs), `host` (one server, the
only module importing the `ollama` client), `pool` (several servers used as one)."""
