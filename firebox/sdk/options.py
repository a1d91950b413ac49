"""The options of functions and classes (@app.function, @app.cls, with_options), checked and
turned into the spec the control plane stores."""

from __future__ import annotations

import difflib
from typing import Any

from ..exception import InvalidError, NotSupportedYet
from ..wire import spec as wire_spec
from .attach import attach_spec
from .gpu import gpu_spec, isolation_spec
from .image import Image
from .retries import retries_spec

# The options @app.function and @app.cls share: each is a keyword parameter of both
# (tests/test_app_signature.py holds them to it); a misspelt one is matched against these.
OPTIONS = frozenset({
    "cpu", "memory", "timeout", "scaledown_window", "min_containers", "max_containers",
    "buffer_containers", "retries", "startup_timeout", "single_use_containers",
    "enable_memory_snapshot", "block_network", "region", "cloud", "ephemeral_disk",
    "max_inputs", "image", "secrets", "volumes", "gpu", "env", "network_file_systems",
    "cloud_bucket_mounts", "proxy", "i6pn", "restrict_modal_access", "experimental_options",
    "nonpreemptible", "isolation",
})

_RENAMED = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
}
_NOT_YET = {
    "network_file_systems": "Network file systems",
    "cloud_bucket_mounts": "Cloud bucket mounts",
    "proxy": "Proxies",
}


def reject_old_options(kwargs: dict[str, Any]) -> None:
    for old, new in _RENAMED.items():
        if old in kwargs:
            raise InvalidError(f"'{old}' was renamed; use {new}= instead.")
    if "allow_concurrent_inputs" in kwargs:
        raise InvalidError(
            "'allow_concurrent_inputs' was removed; decorate the function with "
            "@firebox.concurrent(max_inputs=...) instead."
        )
    if "mounts" in kwargs:
        raise InvalidError(
            "'mounts' was removed; add local files to the image with "
            "Image.add_local_dir / add_local_python_source instead."
        )
    for key, what in _NOT_YET.items():
        value = kwargs.get(key)
        if value not in (None, [], {}, ()):
            raise NotSupportedYet(f"{what} are not supported yet in firebox; remove {key}=.")


def check_image(image: Any, where: str) -> Image | None:
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"{where} takes a firebox.Image, not {type(image).__name__}.")
    return image


def function_spec(options: dict[str, Any], kwargs: dict[str, Any], app_image: Image | None,
                  app_attached: dict[str, Any]) -> dict[str, Any]:
    """The spec entries of @app.function's or @app.cls's options (every name in OPTIONS), on
    top of the App's image, secrets and volumes; kwargs holds what matched no parameter, and
    each name there is refused with what to write instead."""
    reject_old_options({**kwargs, **options})
    if kwargs:
        unknown = sorted(kwargs)
        close = difflib.get_close_matches(unknown[0], OPTIONS, n=1)
        hint = f"; did you mean {close[0]}=?" if close else "."
        raise InvalidError(f"Unexpected options: {', '.join(unknown)}{hint}")
    if options["timeout"] is None:
        raise InvalidError("timeout=None is not allowed; give the limit in seconds.")
    spec = resource_spec(
        options["cpu"], options["memory"], options["timeout"], options["scaledown_window"],
        options["min_containers"], options["max_containers"], options["buffer_containers"],
        options["retries"],
    )
    if options["startup_timeout"] is not None:
        spec["startup_timeout"] = float(options["startup_timeout"])
    if options["single_use_containers"]:
        spec["single_use_containers"] = True
    if options["enable_memory_snapshot"]:
        spec["memory_snapshot"] = True
    if options["max_inputs"]:
        spec["max_inputs"] = int(options["max_inputs"])
    spec["region"], spec["cloud"] = options["region"], options["cloud"]
    if options["block_network"]:
        spec["block_network"] = True
    own = attach_spec(options["secrets"], options["volumes"], options["env"])
    spec["secrets"] = app_attached["secrets"] + own.get("secrets", [])
    spec["volumes"] = {**app_attached["volumes"], **own.get("volumes", {})}
    spec["gpu"] = gpu_spec(options["gpu"])
    spec["isolation"] = isolation_spec(options["isolation"])
    image = check_image(options["image"], "image=") or app_image
    if image is not None:
        spec["image"] = image  # built by publish, before registering
    return spec


def _amount(value: Any, what: str, unit: str, example: str) -> float:
    """A positive number of cores or MiB; anything else says what to write instead."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidError(f"{what}={value!r} is not a positive number of {unit}; write "
                           f"{what}={example}, or {what}=(request, limit).")
    return value


def _split(value: Any, what: str, unit: str, example: str) -> tuple[Any, Any]:
    """(request, limit) of cpu= or memory=, each checked; limit is None when not given."""
    if not isinstance(value, tuple):
        return _amount(value, what, unit, example), None
    if len(value) != 2:
        raise InvalidError(f"{what}={value!r}: a tuple must be (request, limit), like "
                           f"{what}=({example}, {example} * 2).")
    request, limit = (_amount(v, what, unit, example) for v in value)
    if limit < request:
        raise InvalidError(f"{what}={value!r}: the limit ({limit}) is below the request "
                           f"({request}); write (request, limit) with limit >= request.")
    return request, limit


def resource_spec(cpu: Any, memory: Any, timeout: Any, scaledown_window: Any,
                  min_containers: Any, max_containers: Any, buffer_containers: Any,
                  retries: Any) -> dict[str, Any]:
    """Validate and encode the options @app.function and with_options share."""
    spec: dict[str, Any] = {}
    if timeout is not None:
        if not isinstance(timeout, int | float) or timeout <= 0 or timeout > wire_spec.TIMEOUT_MAX:
            raise InvalidError(f"timeout must be seconds between 1 and {wire_spec.TIMEOUT_MAX}.")
        spec["timeout"] = float(timeout)
    if cpu is not None:
        request, limit = _split(cpu, "cpu", "cores", "2")
        spec["cpu"], spec["cpu_limit"] = float(request), limit
    if memory is not None:
        request, limit = _split(memory, "memory", "MiB", "512")
        spec["memory"], spec["memory_limit"] = int(request), limit
    if scaledown_window is not None:
        if not wire_spec.SCALEDOWN_WINDOW_MIN <= scaledown_window <= wire_spec.SCALEDOWN_WINDOW_MAX:
            raise InvalidError(f"scaledown_window must be between {wire_spec.SCALEDOWN_WINDOW_MIN} "
                               f"and {wire_spec.SCALEDOWN_WINDOW_MAX} seconds.")
        spec["scaledown_window"] = float(scaledown_window)
    for key, value in (("min_containers", min_containers), ("max_containers", max_containers),
                       ("buffer_containers", buffer_containers)):
        if value is not None:
            if not isinstance(value, int) or value < 0:
                raise InvalidError(f"{key} must be a non-negative integer.")
            spec[key] = value
    if max_containers is not None and max_containers < 1:
        raise InvalidError("max_containers must be at least 1.")
    if (min_containers or 0) > (max_containers if max_containers is not None else 1 << 30):
        raise InvalidError("min_containers cannot be more than max_containers.")
    if retries is not None:
        spec["retries"] = retries_spec(retries)
    return spec


def variant_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of Function.with_options / Cls.with_options, checked and encoded."""
    reject_old_options(options)
    allowed = {"cpu", "memory", "timeout", "scaledown_window", "min_containers",
               "max_containers", "buffer_containers", "retries", "gpu", "image", "secrets",
               "volumes", "env"}
    unknown = set(options) - allowed
    if unknown:
        raise InvalidError(f"with_options got unknown options: {', '.join(sorted(unknown))}.")
    spec = attach_spec(options.get("secrets"), options.get("volumes"), options.get("env"))
    spec |= resource_spec(
        options.get("cpu"), options.get("memory"), options.get("timeout"),
        options.get("scaledown_window"), options.get("min_containers"),
        options.get("max_containers"), options.get("buffer_containers"), options.get("retries"),
    )
    if options.get("gpu") is not None:
        spec["gpu"] = gpu_spec(options["gpu"])
    if options.get("image") is not None:
        raise NotSupportedYet(f"{name}.with_options(image=) is not supported yet; give the image "
                              "in @app.function(image=...) instead.")
    return spec
