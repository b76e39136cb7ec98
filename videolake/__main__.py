from videolake.cli import app

app(prog_name="videolake")
