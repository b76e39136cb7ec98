"""videolake's command line; the library is ``pipeline``."""
