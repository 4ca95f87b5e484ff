"""The `ltxtune` typer app: one module per command group, added here.

    validate | price | prepare | train      ltxtune.cli.train
    serve | worker                          ltxtune.cli.serve
    db migrate | status                     ltxtune.cli.ops
    models list | inspect | convert | export  ltxtune.cli.models
    lora check                              ltxtune.cli.lora
"""

from __future__ import annotations

import typer

from ltxtune.cli import lora, models, ops, serve, train

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train LoRA adapters for LTX-2 / LTX-2.3 from the request shapes of the hosted trainers.",
)
train.register(app)
serve.register(app)
ops.register(app)
app.add_typer(models.app, name="models")
app.add_typer(lora.app, name="lora")
