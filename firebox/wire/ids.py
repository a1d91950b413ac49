"""Every kind of id, by its prefix, and the one function that mints each."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

# Made by the control plane, at random.
APP = "ap-"
SANDBOX = "sb-"
SECRET = "st-"
VOLUME = "vo-"
DICT = "di-"
QUEUE = "qu-"
WORKSPACE = "ws-"
TOKEN = "tk-"  # a stored API token's row; the token itself is API_TOKEN
API_TOKEN = "fb-"
CONTAINER = "ta-"  # Modal's prefix for a container (a "task")
CONTAINER_TOKEN = "ct-"  # CONTAINER_TOKEN + container id + "." + the container's secret
STANDBY = "sr-"  # a standby runtime's launch key (its directory and first cgroup name)
TEMPLATE = "tp-"  # a memory snapshot's template's launch key
WEB_CALL = "wr-"  # the call of one web request
SNAPSHOT_LAYER = "ly-"  # a layer a sandbox snapshot made
# A proxy auth token: the key and its secret, as Modal spells them (Modal-Key, Modal-Secret).
# The secret shares WORKSPACE's prefix, as Modal's do, but is never read by its prefix: the
# key finds its row, and the secret is only compared by hash.
PROXY_KEY = "wk-"
PROXY_SECRET = "ws-"
MODEL_KEY = "fbm-"  # a model gateway key: fbm-<16 hex id>-<secret>

# Made from what they name, so the same thing gets the same id again.
FUNCTION = "fu-"
IMAGE = "im-"
INPUT = "in-"

# Made by a sandbox, counting (Sandbox.next_id), unique within it.
EXEC = "ex-"
FS_REQUEST = "fs-"

# Made by the client, so a request retried after a lost answer adds nothing twice.
CALL = "fc-"


def _random(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def new_app_id() -> str:
    return _random(APP)


def new_sandbox_id() -> str:
    return _random(SANDBOX)


def new_container_exec_id() -> str:
    """A command exec'd into a function container (a sandbox's count, Sandbox.next_id)."""
    return _random(EXEC)


def new_secret_id() -> str:
    return _random(SECRET)


def new_object_id(prefix: str) -> str:
    """A volume's, dict's or queue's id: prefix is VOLUME, DICT or QUEUE."""
    return _random(prefix)


def new_workspace_id() -> str:
    return _random(WORKSPACE)


def new_token_id() -> str:
    return _random(TOKEN)


def new_api_token() -> str:
    return API_TOKEN + secrets.token_urlsafe(32)


def new_container() -> tuple[str, str]:
    """A container's id and the secret its token carries."""
    return _random(CONTAINER), secrets.token_urlsafe(24)


def container_token(container_id: str, secret: str) -> str:
    return f"{CONTAINER_TOKEN}{container_id}.{secret}"


def parse_container_token(token: str) -> tuple[str, str]:
    """The container id and secret in a container token (empty strings if it is none)."""
    container_id, _, secret = token.removeprefix(CONTAINER_TOKEN).partition(".")
    return container_id, secret


def new_standby_key() -> str:
    return STANDBY + secrets.token_hex(6)


def new_template_key() -> str:
    return TEMPLATE + secrets.token_hex(6)


def new_web_call_id() -> str:
    return _random(WEB_CALL)


def new_snapshot_layer_id() -> str:
    return _random(SNAPSHOT_LAYER)


def new_proxy_token() -> tuple[str, str]:
    """A proxy auth token's key and secret."""
    return _random(PROXY_KEY), PROXY_SECRET + secrets.token_urlsafe(24)


def new_model_key() -> tuple[str, str]:
    """A model gateway key's id and the whole key a client sends, whose secret follows it."""
    key_id = secrets.token_hex(8)
    return key_id, f"{MODEL_KEY}{key_id}-{secrets.token_urlsafe(24)}"


def parse_model_key(token: str) -> str | None:
    """The id of a model gateway key, or None where the text is not one."""
    rest = token.removeprefix(MODEL_KEY)
    key_id, _, secret = rest.partition("-")
    return key_id if rest != token and len(key_id) == 16 and secret else None


def function_id(parent_id: str, key: str) -> str:
    """A function's id: parent_id is its app's (key its name) or, for a variant made with
    with_options, its parent function's (key its options)."""
    return FUNCTION + hashlib.sha256((parent_id + key).encode()).hexdigest()[:16]


def image_id(digest: str) -> str:
    """An image's id from a digest of what it is made of."""
    return IMAGE + digest


def snapshot_image_id(layer_id: str) -> str:
    """The image of a sandbox snapshot, named after its top layer."""
    return IMAGE + layer_id.removeprefix(SNAPSHOT_LAYER)


def input_id(call_id: str, idx: int) -> str:
    """The idx-th input of a call."""
    return f"{INPUT}{call_id[len(CALL):]}-{idx}"


def web_input_id(web_call_id: str) -> str:
    """The one input of a web request's call."""
    return INPUT + web_call_id[len(WEB_CALL):]


# A call id made with the function's call key (which the server gives only to the function's
# own workspace) carries a tag proving it: the server runs such a call at once, without first
# looking up whether the id is taken, since nobody else can have made it.
MAX_CALL_ID = 24  # input ids (INPUT + call id + index) must fit the 32 characters of inputs.id
_CALL_RANDOM = 16  # characters of randomness (80 bits)
_CALL_TAG = 5  # characters of tag (25 bits; the key is secret, so it cannot be searched for)


def _call_tag(call_key: str, random_part: str) -> str:
    digest = hmac.new(call_key.encode(), random_part.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:5]).decode().lower()[:_CALL_TAG]


def new_call_id(call_key: str | None = None) -> str:
    """A fresh call id; tagged when the function's call key is known."""
    random_part = base64.b32encode(os.urandom(10)).decode().lower()
    return CALL + random_part + (_call_tag(call_key, random_part) if call_key else "")


def call_id_is_tagged(call_id: str, call_key: str) -> bool:
    """Whether call_id was made with call_key (by a holder of the function's key)."""
    body = call_id[len(CALL):]
    if not call_id.startswith(CALL) or len(body) != _CALL_RANDOM + _CALL_TAG:
        return False
    return hmac.compare_digest(body[_CALL_RANDOM:], _call_tag(call_key, body[:_CALL_RANDOM]))
