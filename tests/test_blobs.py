"""Blobs are content-addressed, and a workspace reads only the blobs it uploaded."""

import hashlib

import httpx
from other_workspace import other_workspace_env


def test_a_blob_is_readable_only_by_the_workspace_that_uploaded_it(server):
    data = b"only for the main workspace " + server.url.encode()
    digest = hashlib.sha256(data).hexdigest()
    mine = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    theirs_token = other_workspace_env(server)["FIREBOX_TOKEN"]
    theirs = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {theirs_token}"})

    assert mine.post("/v1/blobs/missing", json={"digests": [digest]}).json()["missing"] == [digest]
    assert mine.put(f"/v1/blobs/{digest}", content=data).status_code == 200
    assert mine.get(f"/v1/blobs/{digest}").content == data

    # Knowing the hash is not enough: the other workspace must upload the bytes itself.
    assert theirs.get(f"/v1/blobs/{digest}").status_code == 404
    assert theirs.post("/v1/blobs/missing", json={"digests": [digest]}).json()["missing"] == [
        digest
    ]
    assert theirs.put(f"/v1/blobs/{digest}", content=data).status_code == 200
    assert theirs.get(f"/v1/blobs/{digest}").content == data


def test_a_blob_whose_content_does_not_match_its_name_is_refused(server):
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    response = client.put("/v1/blobs/" + "0" * 64, content=b"something else")
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]


def test_blob_routes_need_a_token(server):
    response = httpx.get(f"{server.url}/v1/blobs/{'0' * 64}")
    assert response.status_code == 401
    assert "token" in response.json()["error"]
