"""Knowledge: a guild's documents, chunked, embedded and searched for each chat turn."""
