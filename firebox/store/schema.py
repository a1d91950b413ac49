"""The tables of the control plane's database. Migrations in migrations/versions mirror them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # The isolation of its containers when a function does not choose; None: the server's.
    sa.Column("isolation", sa.String(16)),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "user" or "container"
    sa.Column("container_id", sa.String(32)),
    sa.Column("created_at", sa.Float, nullable=False),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Which workspaces uploaded a blob: a workspace reads only blobs it uploaded itself.
blob_owners = sa.Table(
    "blob_owners",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# A workspace's environments other than "main", which every workspace has without a row:
# named namespaces of its apps and named objects (their `environment` column).
environments = sa.Table(
    "environments",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False, index=True),
    sa.Column("environment", sa.String(64), nullable=False, server_default="main"),
    sa.Column("name", sa.String(128)),
    sa.Column("state", sa.String(16), nullable=False),  # "ephemeral", "deployed", "stopped"
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
)

app_events = sa.Table(
    "app_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

# Each deploy of an app: what it registered, so `firebox app rollback` can deploy it again.
app_versions = sa.Table(
    "app_versions",
    metadata,
    sa.Column("app_id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),  # 1, 2, ... per app
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("rollback_of", sa.Integer),  # the version this one deployed again, if a rollback
    sa.Column("client_version", sa.String(32), nullable=False),  # the firebox that deployed it
    sa.Column("deployed_by", sa.String(128), nullable=False),  # the workspace's name
    sa.Column("commit", sa.String(48)),  # the app's git commit, "*" after it if it had changes
    sa.Column("functions", sa.Text, nullable=False),  # JSON: [[name, checked spec], ...]
)

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("app_id", sa.String(32), nullable=False, index=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # JSON
    # a with_options variant's function; its app's for a version pinned by from_name(version=)
    sa.Column("parent_id", sa.String(32)),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("function_id", sa.String(32), nullable=False, index=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("method", sa.String(256)),
    sa.Column("params", sa.LargeBinary),
    sa.Column("pool_key", sa.String(64), nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The input whose code made this call (inside a container), for FunctionCall.get_call_graph.
    sa.Column("parent_input_id", sa.String(32), index=True),
)

inputs = sa.Table(
    "inputs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("call_id", sa.String(32), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("args", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("call_id", "idx", name="uq_inputs_call_idx"),
)

outputs = sa.Table(
    "outputs",
    metadata,
    sa.Column("call_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("data", sa.LargeBinary),
    sa.Column("created_at", sa.Float, nullable=False),
    # For metering: which container ran the input and for how long.
    sa.Column("container_id", sa.String(32)),
    sa.Column("exec_seconds", sa.Float),
)

containers = sa.Table(
    "containers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("app_id", sa.String(32), nullable=False, index=True),
    sa.Column("function_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float),
    sa.Column("cause", sa.Text),
    # What the container reserved, for metering: cores, MiB, and GPUs ("H100:2").
    sa.Column("cpu", sa.Float),
    sa.Column("memory_mb", sa.Integer),
    sa.Column("gpu", sa.String(64)),
    sa.Column("ready_at", sa.Float),
    # How it started: cold, standby, template or stored (wire/messages.py START_KINDS).
    sa.Column("start_kind", sa.String(16)),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("container_id", sa.String(32)),
    sa.Column("function_name", sa.String(256)),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_logs_app_id_id", "app_id", "id"),
)

# ---- named objects: Dicts, Queues, Secrets, Volumes -----------------------------------------
# Each belongs to a workspace and an environment of it; `name` is NULL for an ephemeral object
# (known only by its id).

dicts = sa.Table(
    "dicts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("environment", sa.String(64), nullable=False, server_default="main"),
    sa.UniqueConstraint("workspace_id", "environment", "name",
                        name="uq_dicts_workspace_environment_name"),
)

dict_entries = sa.Table(
    "dict_entries",
    metadata,
    sa.Column("dict_id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), primary_key=True),  # sha256 of the pickled key
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("environment", sa.String(64), nullable=False, server_default="main"),
    sa.UniqueConstraint("workspace_id", "environment", "name",
                        name="uq_queues_workspace_environment_name"),
)

queue_items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("queue_id", sa.String(32), nullable=False),
    sa.Column("partition", sa.String(64), nullable=False),  # "" is the default partition
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_queue_items_queue_partition_id", "queue_id", "partition", "id"),
)

queue_partitions = sa.Table(
    "queue_partitions",
    metadata,
    sa.Column("queue_id", sa.String(32), primary_key=True),
    sa.Column("partition", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Float),  # NULL: never (the default partition)
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128)),  # NULL for a secret made by from_dict / from_dotenv
    sa.Column("data", sa.LargeBinary, nullable=False),  # Fernet token of the JSON env
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("environment", sa.String(64), nullable=False, server_default="main"),
    sa.UniqueConstraint("workspace_id", "environment", "name",
                        name="uq_secrets_workspace_environment_name"),
)

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128)),
    sa.Column("version", sa.Integer, nullable=False),  # bumped by every commit
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("environment", sa.String(64), nullable=False, server_default="main"),
    sa.UniqueConstraint("workspace_id", "environment", "name",
                        name="uq_volumes_workspace_environment_name"),
)

volume_files = sa.Table(
    "volume_files",
    metadata,
    sa.Column("volume_id", sa.String(32), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),  # relative, "/"-separated
    sa.Column("sha256", sa.String(64), nullable=False),  # the content, in the blob store
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.Integer, nullable=False),
    sa.Column("mtime", sa.Float, nullable=False),
)

# ---- web endpoints ---------------------------------------------------------------------------

# Proxy tokens: the Modal-Key (id) and Modal-Secret (hashed) that requires_proxy_auth endpoints
# of the workspace accept.
proxy_tokens = sa.Table(
    "proxy_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False, index=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Sandboxes: the control plane runs them; this is what outlives them (status, exit, tags).
sandboxes = sa.Table(
    "sandboxes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False, index=True),
    sa.Column("app_id", sa.String(32), nullable=False, index=True),
    sa.Column("name", sa.String(128)),
    sa.Column("tags", sa.Text, nullable=False),  # JSON object of str -> str
    sa.Column("isolation", sa.String(16), nullable=False),  # "gvisor" or "namespaces"
    sa.Column("status", sa.String(16), nullable=False),  # running finished terminated timeout
    sa.Column("returncode", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)

# File system snapshots of sandboxes (snapshot_filesystem): directories in the state directory.
sandbox_images = sa.Table(
    "sandbox_images",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("layers", sa.Text, nullable=False),  # JSON list of layer ids, newest first
    sa.Column("created_at", sa.Float, nullable=False),
)

# Image layers: directories under <state>/images/layers named by the hash of everything that
# produced them (parent layer, step, inputs), so any image with the same steps reuses them.
image_layers = sa.Table(
    "image_layers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # pip apt run copy mount
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # built | failed
    sa.Column("size_bytes", sa.Integer, nullable=False, default=0),
    sa.Column("log_tail", sa.Text, nullable=False, default=""),
    sa.Column("built_at", sa.Float, nullable=False),
    sa.Column("build_seconds", sa.Float, nullable=False, default=0.0),
)

# Images a workspace built: their layers (oldest first) and the environment they set.
images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("layers", sa.Text, nullable=False),  # JSON list of layer ids, oldest first
    sa.Column("env", sa.Text, nullable=False),  # JSON object
    sa.Column("workdir", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=False),
    # JSON: a registry image's {"rootfs": true, "user", "entrypoint"}; null for the others.
    sa.Column("config", sa.Text),
)

# The model gateway (gateways/openai.py): each request through /v1, with its tokens.
model_requests = sa.Table(
    "model_requests",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the request's web call id
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("app_id", sa.String(32), nullable=False),
    sa.Column("function_id", sa.String(32), nullable=False),
    sa.Column("model", sa.String(260), nullable=False),  # as requested
    sa.Column("base", sa.String(130), nullable=False),
    sa.Column("adapter", sa.String(130)),
    sa.Column("key_id", sa.String(32)),  # a gateway key's; null for a firebox token
    sa.Column("container_id", sa.String(32)),
    sa.Column("endpoint", sa.String(32), nullable=False),  # chat/completions, embeddings, ...
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cached_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("usage_counted", sa.Boolean, nullable=False, default=False),  # not the engine's
    sa.Column("cost_usd", sa.Float, nullable=False, default=0.0),
    sa.Column("ttft_ms", sa.Float),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_model_requests_workspace_created", "workspace_id", "created_at"),
)

# API keys made for the model gateway alone: scoped to models, with limits of their own.
model_keys = sa.Table(
    "model_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace_id", sa.String(32), nullable=False, index=True),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("models", sa.Text),  # JSON list of model names; null: every model
    sa.Column("limits", sa.Text, nullable=False),  # JSON object (core/model_limits.py)
    sa.Column("created_at", sa.Float, nullable=False),
)

# A workspace's limits on the model gateway (core/model_limits.py), as JSON.
model_limits = sa.Table(
    "model_limits",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("limits", sa.Text, nullable=False),
)
