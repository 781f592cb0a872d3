"""The ``--web.config.file`` format: YAML, known keys, types; and its one-line errors.

The file uses the Prometheus exporter-toolkit format, so users reuse what they
know from node_exporter and ``promtool check web-config`` validates it::

    tls_server_config:
      cert_file: tls.crt            # relative paths are relative to this file
      key_file: tls.key
      client_ca_file: ca.crt
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hash
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from exporter.config.yamlfile import Schema, YAMLFileError, load_mapping, unknown_key
from exporter.core.errors import ConfigError
from exporter.core.logs import mask_value

# Keys of newer exporter-toolkit releases that this exporter cannot honour.
# Ignoring them would serve less securely than the user asked, so they fail.
_UNSUPPORTED_KEYS: Mapping[tuple[str, ...], str] = {
    ("tls_server_config", "client_allowed_sans"):
        "not supported by scenario-exporter; use a dedicated client CA instead",
    ("tls_server_config", "cert"): "inline certificates are not supported; use cert_file",
    ("tls_server_config", "key"): "inline keys are not supported; use key_file",
    ("tls_server_config", "client_ca"): "inline CAs are not supported; use client_ca_file",
    ("rate_limit",): "not supported by scenario-exporter",
}


class WebConfigError(ConfigError):
    """An invalid web config; ``str()`` is one line naming the file and the field."""

    def __init__(self, path: str | os.PathLike[str], field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{field}: " if field else ""
        super().__init__(f"web config {self.path}: {where}{problem}")


def _scalar_text(value: Any) -> Any:
    """Header values: YAML reads ``X-XSS-Protection: 0`` as an int; Go reads it as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TLSServerSchema(_Schema):
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"
    cipher_suites: list[str] | None = None
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]] | None = None


class HTTPServerSchema(_Schema):
    http2: bool = True
    headers: dict[str, Annotated[str, BeforeValidator(_scalar_text)]] | None = None


class WebConfigSchema(_Schema):
    tls_server_config: TLSServerSchema | None = None
    http_server_config: HTTPServerSchema | None = None
    basic_auth_users: dict[str, str] | None = None


def _parse_yaml(path: Path, text: bytes) -> Mapping[str, Any]:
    try:
        return load_mapping(text)
    except YAMLFileError as exc:
        raise WebConfigError(path, "", str(exc)) from None


def _model_schema(model: type[BaseModel]) -> Schema:
    """The keys of *model* and its nested models, for :func:`unknown_key`."""
    schema: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        nested = [arg for arg in (info.annotation, *typing.get_args(info.annotation))
                  if isinstance(arg, type) and issubclass(arg, BaseModel)]
        schema[name] = _model_schema(nested[0]) if nested else None
    return schema


def _check_unsupported(path: Path, data: Mapping[str, Any]) -> None:
    for keys, problem in _UNSUPPORTED_KEYS.items():
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            raise WebConfigError(path, ".".join(keys), problem)


def _schema_error(path: Path, exc: ValidationError) -> WebConfigError:
    """The first pydantic error as one line; never the value (it may be a hash)."""
    error = exc.errors()[0]
    parts: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        elif part != "[key]":
            parts.append(str(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "literal_error":
        problem = (f"must be one of {error['ctx']['expected']}, "
                   f"got {mask_value(str(error['input']))}")
    elif kind == "string_type":
        problem = "must be a string" + (" (quote it)" if error["loc"][-1] == "[key]" else "")
    elif kind == "bool_type":
        problem = "must be true or false"
    elif kind in {"dict_type", "model_type"}:
        problem = "must be a mapping"
    elif kind == "list_type":
        problem = "must be a list"
    else:
        problem = error["msg"]
    return WebConfigError(path, ".".join(parts), problem)


def validate_schema(path: Path, text: bytes) -> WebConfigSchema:
    """The file's text checked against the format: YAML, no unknown keys, types."""
    data = _parse_yaml(path, text)
    _check_unsupported(path, data)
    unknown = unknown_key(data, _model_schema(WebConfigSchema))
    if unknown:
        raise WebConfigError(path, *unknown)
    try:
        return WebConfigSchema.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(path, exc) from None
