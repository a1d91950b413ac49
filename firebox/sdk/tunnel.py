"""Tunnel: how to reach a port of a sandbox from outside (Modal's names and fields)."""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import InvalidError


@dataclass(frozen=True)
class Tunnel:
    host: str
    port: int  # TLS, terminated by the server with its certificate
    unencrypted_host: str = ""
    unencrypted_port: int = 0

    @property
    def url(self) -> str:
        """The HTTPS URL of the port."""
        return f"https://{self.host}" + ("" if self.port == 443 else f":{self.port}")

    @property
    def tls_socket(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tcp_socket(self) -> tuple[str, int]:
        """Plain TCP, for ports the sandbox was created with in unencrypted_ports=."""
        if not self.unencrypted_host:
            raise InvalidError("This tunnel has no unencrypted TCP socket; create the sandbox "
                               "with the port in unencrypted_ports= for one.")
        return (self.unencrypted_host, self.unencrypted_port)
