"""`lic train`'s family options: each model family declares its own training options as a dataclass
(``models.interface.Training.options``, fields made with ``option()``); this turns the fields of
the chosen model's family into command-line options, so a new knob needs no change here."""
from __future__ import annotations

import dataclasses
import typing

import click

from models.defaults import DEFAULT_MODEL


def _model_named(args: list[str]) -> str | None:
    """The value of -m/--model among raw command-line arguments (the last one wins, as in click)."""
    model = None
    for index, arg in enumerate(args):
        if arg in ("-m", "--model") and index + 1 < len(args):
            model = args[index + 1]
        elif arg.startswith("--model="):
            model = arg.split("=", 1)[1]
        elif arg.startswith("-m") and len(arg) > 2:
            model = arg[2:]
    return model


def options_class(model: str) -> type | None:
    """The training options dataclass of a model's family (None for an unknown model)."""
    from models import zoo

    return zoo.ZOO[model].training.options if model in zoo.ZOO else None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _click_option(field: dataclasses.Field, annotation) -> click.Option:
    meta = field.metadata
    help_text = meta.get("help", "")
    if annotation is bool:
        return click.Option([_flag(field.name), field.name], is_flag=True, default=field.default, help=help_text)
    parse = meta.get("parse")
    if parse is None:
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)] or [annotation]
        parse = kinds[0]

    def convert(context, parameter, value):
        if value is None or not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None

    return click.Option([_flag(field.name), field.name], default=field.default, callback=convert, type=str,
                        show_default=field.default is not None, metavar=meta.get("metavar") or parse.__name__.upper(),
                        help=help_text)


def click_options(options: type) -> list[click.Option]:
    hints = typing.get_type_hints(options)
    return [_click_option(field, hints[field.name]) for field in dataclasses.fields(options)]


def owners_of(flag: str) -> list[str]:
    """The models whose families take a command-line option."""
    from models import zoo

    return [name for name, item in zoo.ZOO.items()
            if any(_flag(field.name) == flag for field in dataclasses.fields(item.training.options))]


def split_values(options: type, values: dict) -> tuple[object, dict]:
    """(the options instance, configuration overrides) from the command's values; the values of
    the family's fields are removed from `values`. Fields declared with config= override that key
    of the model configuration when given."""
    mine = {field.name: values.pop(field.name) for field in dataclasses.fields(options) if field.name in values}
    overrides = {field.metadata["config"]: mine[field.name] for field in dataclasses.fields(options)
                 if field.metadata.get("config") and mine.get(field.name) is not None}
    return options(**mine), overrides


class FamilyOptionsCommand(click.Command):
    """A click command that also takes the options of the --model's family (shown by --help under
    their own heading)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.common_params = list(self.params)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        model = _model_named(args) or DEFAULT_MODEL
        options = options_class(model)
        ctx.meta["family_options"] = options
        ctx.meta["family_model"] = model
        self.params = self.common_params + (click_options(options) if options else [])
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            owners = owners_of(error.option_name)
            if owners:
                raise click.BadParameter(f"does not apply to --model {model} (an option of {', '.join(owners)})",
                                         ctx=ctx, param_hint=error.option_name) from None
            raise

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        family = {parameter.name for parameter in self.params} - {parameter.name for parameter in self.common_params}
        common = [p.get_help_record(ctx) for p in self.get_params(ctx) if p.name not in family]
        own = [p.get_help_record(ctx) for p in self.params if p.name in family]
        with formatter.section("Options"):
            formatter.write_dl([record for record in common if record])
        if own:
            with formatter.section(f"Options of --model {ctx.meta.get('family_model')} (lic train --model NAME "
                                   "--help lists another model's)"):
                formatter.write_dl([record for record in own if record])
