from videolake.cli import entry

entry()
