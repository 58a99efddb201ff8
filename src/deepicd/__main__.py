from deepicd.cli import app

app()
