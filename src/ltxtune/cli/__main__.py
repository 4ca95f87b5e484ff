from ltxtune.cli.main import app

app()
