"""The Snakemake workflow catalog's conventions: config/README.md documents exactly the keys the
params schema accepts, and .snakemake-workflow-catalog.yml has the fields the catalog reads."""

from __future__ import annotations

import re
import types
import typing
from inspect import isclass

import yaml
from pydantic import BaseModel
from smk_helpers import ROOT

from tipping.config import Params


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted keys of every leaf field; a mapping of models keyed by model name reads `<model>`."""
    keys = set()
    for name, field in model.model_fields.items():
        inner = _nested(field.annotation, prefix + name)
        keys |= inner or {prefix + name}
    return keys


def _nested(annotation, key: str) -> set[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isclass(annotation) and issubclass(annotation, BaseModel):
        return schema_keys(annotation, key + ".")
    if origin is dict and isclass(args[1]) and issubclass(args[1], BaseModel):
        return schema_keys(args[1], key + ".<model>.")
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_nested(a, key) for a in args))
    return set()


def documented_keys(text: str) -> set[str]:
    """The keys in the first column of config/README.md's `| Key | Meaning |` tables."""
    keys, in_table = set(), False
    for line in text.splitlines():
        in_table = line.startswith("| Key |") or (in_table and line.startswith("|"))
        if in_table:
            keys |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return keys


def test_config_readme_documents_every_params_key():
    schema = schema_keys(Params)
    assert {
        "results",
        "model_settings.<model>.sampling.top_p",
        "dpo.lora.r",
        "evolution.filter.fraction",
        "runtime.gpu_memory_gb",
    } <= schema  # the walk reaches nested sections
    documented = documented_keys((ROOT / "config" / "README.md").read_text())
    assert not schema - documented, f"params keys missing from config/README.md: {sorted(schema - documented)}"
    assert not documented - schema, f"config/README.md documents keys the schema lacks: {sorted(documented - schema)}"


def test_catalog_metadata_has_what_the_catalog_reads():
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    flags = usage["mandatory-flags"]
    assert flags["desc"].strip() and flags["flags"].strip()
    assert set(usage["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    assert all(isinstance(v, bool) for v in usage["software-stack-deployment"].values())
    assert usage["report"] is True
    # what the usage text names exists
    assert (ROOT / "workflow" / "profiles" / flags["flags"].split()[-1]).is_dir()
    for overlay in re.findall(r"config/\w+\.yaml", flags["desc"]):
        assert (ROOT / overlay).is_file(), overlay
