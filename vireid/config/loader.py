"""Load, check and save vireid configurations.

A configuration starts from the defaults in :mod:`vireid.config.defaults` (an OmegaConf structured
config in struct mode), then merges a chain of YAML files, then ``key=value`` command-line overrides:

- a YAML file may name one or more bases with ``_base_: path.yaml`` (a string or a list); relative
  paths are resolved against the folder of the file that names them. Bases are merged first, in list
  order, recursively; the including file's own keys win. A file that (indirectly) includes itself is
  an error naming the cycle;
- overrides are ``dotted.key=value`` strings; the value is parsed as YAML, so ``model.mca_after=[3]``
  gives a list and ``optim.lr=1e-3`` a float. Later overrides win.

Every key and value is checked: an unknown key is a :class:`~vireid.errors.ConfigError` naming the key,
the file (or the override) it came from, and the nearest valid key; a value of the wrong type names the
key, the value and the expected type. The values checked are the merged ones: a value that a later file or
override replaces never reaches the run, and is not checked.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vireid.config.defaults import VireidConfig
from vireid.errors import ConfigError

#: The key a YAML file uses to name the file(s) it inherits from.
BASE_KEY = "_base_"


# ---------------------------------------------------------------------------------------------------
# the schema: dotted keys and their types
# ---------------------------------------------------------------------------------------------------
def _schema(cls: type = VireidConfig, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> type annotation of every field, sections included (``"data"``, ``"data.name"``)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        tp = hints[f.name]
        out[key] = tp
        if dataclasses.is_dataclass(tp):
            out.update(_schema(tp, key + "."))
    return out


_SCHEMA = _schema()
_SECTIONS = {k for k, tp in _SCHEMA.items() if dataclasses.is_dataclass(tp)}


def config_keys() -> list[str]:
    """Every configurable (leaf) key as a dotted name, in the order of the defaults file."""
    return [k for k in _SCHEMA if k not in _SECTIONS]


def _type_name(tp: Any) -> str:
    """A readable name of a type annotation: ``int``, ``list[int]``, ``str or None``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = typing.get_args(tp)
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _suggest(key: str) -> str:
    """`` Did you mean 'x.y'?`` for the nearest valid key, or an empty string."""
    candidates = list(_SCHEMA)
    near = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not near:
        # the last component alone often identifies the key (``epochs`` -> ``train.epochs``)
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in reversed(candidates)}
        leaf_near = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
        near = [by_leaf[leaf_near[0]]] if leaf_near else []
    return f" Did you mean {near[0]!r}?" if near else ""


def _unknown_key_error(key: str, source: str) -> ConfigError:
    return ConfigError(f"{source}: unknown config key {key!r}.{_suggest(key)}")


def _check_keys(data: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``data`` (a nested mapping) not in the schema."""
    for raw_key, value in data.items():
        key = prefix + str(raw_key)
        if key not in _SCHEMA:
            raise _unknown_key_error(key, source)
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: config key {key!r} is a section; expected a mapping of its keys, "
                    f"got {value!r}"
                )
            _check_keys(value, source, key + ".")


def _expected_type(key: str) -> str:
    """The expected type of ``key``; ``a.b[0]`` is an element of the list ``a.b``."""
    if key in _SCHEMA:
        return _type_name(_SCHEMA[key])
    match = re.fullmatch(r"(.+)\[\d+\]", key)
    if match and match.group(1) in _SCHEMA:
        args = typing.get_args(_SCHEMA[match.group(1)])
        if args:
            return _type_name(args[0])
    return "a valid value"


@functools.lru_cache(maxsize=1)
def _defaults() -> DictConfig:
    """The defaults as a struct-mode structured config, built once per process (building it from the
    dataclasses costs several times a copy). Never handed out: :func:`_fresh_defaults` copies it."""
    cfg = OmegaConf.structured(VireidConfig)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _fresh_defaults() -> DictConfig:
    """A config of the defaults of its own, to merge into."""
    return copy.deepcopy(_defaults())


def _merge(cfg: DictConfig, data: Mapping[str, Any], source: str) -> DictConfig:
    """Merge ``data`` into ``cfg`` in place (``cfg`` is the loader's own copy, so nothing is copied per layer);
    a type mismatch is a ConfigError naming key, value and type."""
    _check_keys(data, source)
    try:
        return typing.cast(DictConfig, OmegaConf.unsafe_merge(cfg, OmegaConf.create(dict(data))))
    except OmegaConfBaseException as exc:
        key = exc.full_key or "?"
        expected = _expected_type(key)
        value = OmegaConf.select(OmegaConf.create(dict(data)), key, default=getattr(exc, "value", None))
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        reason = str(exc).splitlines()[0]
        raise ConfigError(
            f"{source}: config key {key!r} has the value {value!r}; expected {expected} ({reason})"
        ) from None


# ---------------------------------------------------------------------------------------------------
# YAML files and their bases
# ---------------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and OSError, with line information
        raise ConfigError(f"{path}: cannot read the YAML ({type(exc).__name__}: {exc})") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got a list")
    data = OmegaConf.to_container(node, resolve=False)
    assert isinstance(data, dict)
    return typing.cast(dict[str, Any], data)


def _yaml_chain(path: Path, stack: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """``(file, its own keys)`` for ``path`` and its bases, bases first (merge order)."""
    path = path.expanduser().resolve()
    if path in stack:
        cycle = " -> ".join(str(p) for p in (*stack[stack.index(path) :], path))
        raise ConfigError(f"config files include each other in a cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
    chain: list[tuple[Path, dict[str, Any]]] = []
    for base in bases:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} file {base!r} does not exist (looked for {base_path})")
        chain.extend(_yaml_chain(base_path, (*stack, path)))
    chain.append((path, data))
    return chain


def _parse_override(text: str) -> dict[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.epochs=10)")
    key = text.split("=", 1)[0].strip()
    if not key:
        raise ConfigError(f"override {text!r} has no key before '='")
    if key not in _SCHEMA:
        raise _unknown_key_error(key, f"override {text!r}")
    try:
        parsed = OmegaConf.from_dotlist([text.strip()])
    except OmegaConfBaseException as exc:
        raise ConfigError(f"override {text!r} cannot be parsed: {exc}") from None
    data = OmegaConf.to_container(parsed, resolve=False)
    assert isinstance(data, dict)
    return typing.cast(dict[str, Any], data)


def _deep_update(target: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Merge the nested mapping ``data`` into ``target`` as OmegaConf merges: mappings key by key, any other
    value (lists included) replaced."""
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _layers(path: str | Path | None, overrides: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(source, keys)`` in merge order: each file of ``path``'s ``_base_`` chain, then each override."""
    layers = [(str(file), data) for file, data in _yaml_chain(Path(path))] if path is not None else []
    return layers + [(f"override {text!r}", _parse_override(text)) for text in overrides]


def _merge_layers(layers: list[tuple[str, dict[str, Any]]], *, at_once: bool) -> DictConfig:
    """The defaults with ``layers`` merged in, later layers winning: ``at_once``, the layers combined as plain
    mappings and checked in one OmegaConf merge (a merge into the whole config costs milliseconds, and
    configs chain several files and tests pass many overrides); otherwise one merge per layer, so that a bad
    key or value is named with the file or override it comes from."""
    cfg = _fresh_defaults()
    if at_once and len(layers) > 1:
        combined: dict[str, Any] = {}
        for _, data in layers:
            _deep_update(combined, data)
        return _merge(cfg, combined, "the config files and overrides")  # an error: the caller merges again
    for source, data in layers:
        cfg = _merge(cfg, data, source)
    return cfg


# ---------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------
def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The defaults, merged with the YAML file ``path`` (and its ``_base_`` chain), then ``overrides``.

    Returns a struct-mode DictConfig typed by :class:`vireid.config.defaults.VireidConfig` (assigning
    an unknown key later is an error too). Raises :class:`~vireid.errors.ConfigError` on a missing or
    malformed file, an unknown key, a value of the wrong type, an enumerated value that is not one of its
    choices (:mod:`vireid.config.checks`), a ``_base_`` cycle or an override without ``=``.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not one string")
    layers = _layers(path, overrides)
    try:
        cfg = _merge_layers(layers, at_once=True)
    except ConfigError:  # again one layer at a time: the error then names the file or override of the value
        cfg = _merge_layers(layers, at_once=False)
    OmegaConf.set_struct(cfg, True)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve an interpolation in the config: {exc}") from None
    from vireid.config.checks import check_config

    check_config(cfg)
    return cfg


def config_to_yaml(cfg: DictConfig) -> str:
    """The fully resolved configuration as YAML text (every key, interpolations resolved)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | Path) -> Path:
    """Write the fully resolved ``cfg`` to ``path`` atomically (a temporary file, then ``os.replace``).

    The parent folder is created if needed. Returns the path written.
    """
    from vireid.io import write_text_atomic

    return write_text_atomic(path, config_to_yaml(cfg))


def config_from_yaml(text: str, source: str = "recorded config") -> DictConfig:
    """A struct-mode config typed by the defaults, from resolved YAML text (as checkpoints, gallery indexes
    and ``--all-trials`` runs record it); ``source`` names it in the error."""
    try:
        return OmegaConf.unsafe_merge(_fresh_defaults(), OmegaConf.create(text))
    except (OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"{source}: cannot be read as a vireid config ({str(exc).splitlines()[0]})") from None
