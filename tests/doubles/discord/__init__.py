"""The Discord double, one concern a module; `tests.doubles.fake_discord` re-exports it."""
